//! The response head a client receives from a server's: the sticky cookie set when the pick asks
//! for it, the backend's `Server` header and the hop-by-hop fields of its connection removed
//! (Keep-Alive, Proxy-Connection, what its Connection names; a 101 keeps its Upgrade), the
//! request id, the route's security headers and CORS headers, and HSTS on TLS listeners.

use http::header::{CONNECTION, SERVER, STRICT_TRANSPORT_SECURITY};
use http::{HeaderName, HeaderValue};
use pingora::http::ResponseHeader;

use super::balancing;
use super::outbound::MAX_CONNECTION_OPTIONS;
use crate::observe::request_id::REQUEST_ID_HEADER;
use crate::pool::Pick;
use crate::runtime::UpstreamRuntime;
use crate::security::cors::CorsHeaders;
use crate::security::{self, RouteGuard};

static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// What the client's response head depends on besides the server's.
pub struct Reply<'a> {
    pub upstream: &'a UpstreamRuntime,
    pub pick: &'a Pick,
    /// A TLS listener: the sticky cookie is `Secure`.
    pub secure: bool,
    pub guard: Option<&'a RouteGuard>,
    pub cors: CorsHeaders,
    pub hsts: Option<&'a HeaderValue>,
    pub request_id: &'a HeaderValue,
}

/// Turns the server's response head into the client's.
pub fn downstream_head(response: &mut ResponseHeader, reply: Reply<'_>) -> pingora::Result<()> {
    balancing::insert_sticky_cookie(reply.upstream, reply.pick, reply.secure, response)?;
    response.insert_header(REQUEST_ID_HEADER, reply.request_id.clone())?;
    // The backend's software and version are nobody's business at the edge.
    response.remove_header(&SERVER);
    if response.status.as_u16() != 101 {
        strip_hop_by_hop(response);
    }
    security::headers::add(reply.guard, response)?;
    for (name, value) in reply.cors {
        if name == "vary" {
            response.append_header(name, value)?;
        } else {
            response.insert_header(name, value)?;
        }
    }
    if let Some(hsts) = reply.hsts {
        if !response.headers.contains_key(STRICT_TRANSPORT_SECURITY) {
            response.insert_header(STRICT_TRANSPORT_SECURITY, hsts.clone())?;
        }
    }
    Ok(())
}

/// Removes the fields that described the server's connection, not the response.
fn strip_hop_by_hop(response: &mut ResponseHeader) {
    let mut named: [Option<HeaderName>; MAX_CONNECTION_OPTIONS] = Default::default();
    if let Some(connection) = response.headers.get(CONNECTION) {
        let options = connection
            .as_bytes()
            .split(|b| *b == b',')
            .map(<[u8]>::trim_ascii)
            // The usual options name no field; the client connection's own Connection is set
            // by the session writing the head.
            .filter(|t| !t.eq_ignore_ascii_case(b"keep-alive") && !t.eq_ignore_ascii_case(b"close"))
            .filter_map(|t| HeaderName::from_bytes(t).ok())
            .filter(|name| name != CONNECTION);
        for (slot, name) in named.iter_mut().zip(options) {
            *slot = Some(name);
        }
    }
    for name in named.iter().flatten() {
        response.remove_header(name);
    }
    response.remove_header(&KEEP_ALIVE);
    response.remove_header(&PROXY_CONNECTION);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_server_s_connection_fields_do_not_reach_the_client() {
        let mut r = ResponseHeader::build(200, None).expect("head");
        r.insert_header("connection", "keep-alive, x-hop")
            .expect("h");
        r.insert_header("x-hop", "1").expect("h");
        r.insert_header("keep-alive", "timeout=5").expect("h");
        r.insert_header("x-end", "2").expect("h");
        strip_hop_by_hop(&mut r);
        assert!(r.headers.get("x-hop").is_none());
        assert!(r.headers.get("keep-alive").is_none());
        assert_eq!(
            r.headers.get("x-end").map(|v| v.as_bytes()),
            Some(&b"2"[..])
        );
    }
}
