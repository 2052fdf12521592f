//! The response head a client receives, built in one pass from the server's: the backend's
//! `Server` header and the hop-by-hop fields of its connection left out (Keep-Alive,
//! Proxy-Connection, what its Connection names; a 101 keeps its Upgrade), the request id, the
//! sticky cookie when the pick asks for it, the route's security and CORS headers, HSTS on
//! TLS listeners, and last the route's `headers.response`. Header names are set from constants, never parsed per response.

use http::header::{CACHE_CONTROL, CONNECTION, SERVER, SET_COOKIE, STRICT_TRANSPORT_SECURITY};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use pingora::http::ResponseHeader;

use super::error::EdgeError;
use super::outbound::MAX_CONNECTION_OPTIONS;
use crate::balance::sticky::{private_cache_control, set_cookie};
use crate::config::model::StickyMode;
use crate::observe::request_id::REQUEST_ID;
use crate::pool::Pick;
use crate::routing::headers::{HeaderRuleSet, TemplateVars};
use crate::runtime::UpstreamRuntime;
use crate::security::cors::CorsHeaders;
use crate::security::{headers as security_headers, RouteGuard};

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
    /// The route's `headers.response` and what their placeholders stand for.
    pub rules: Option<(&'a HeaderRuleSet, TemplateVars<'a>)>,
}

/// The client's response head for the server's `response`.
pub fn downstream_head(
    response: &ResponseHeader,
    reply: Reply<'_>,
) -> Result<Box<ResponseHeader>, EdgeError> {
    let upgrade = response.status == StatusCode::SWITCHING_PROTOCOLS;
    let named = if upgrade {
        Default::default()
    } else {
        nominated(&response.headers)
    };
    let mut headers = HeaderMap::with_capacity(response.headers.len() + 4);
    for (name, value) in response.headers.iter() {
        // The backend's software and version are nobody's business at the edge.
        let skip = name == SERVER
            || name == REQUEST_ID
            || (!upgrade
                && (name == KEEP_ALIVE
                    || name == PROXY_CONNECTION
                    || named.iter().flatten().any(|n| n == name)));
        if !skip {
            headers.append(name.clone(), value.clone());
        }
    }
    // The server's own X-Request-Id was left out above: ours is the one the client sees.
    headers.append(REQUEST_ID.clone(), reply.request_id.clone());
    sticky_cookie(&reply, &mut headers);
    for (name, value) in security_headers::missing(reply.guard, &headers) {
        headers.insert(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    }
    for (name, value) in reply.cors {
        let Ok(value) = HeaderValue::from_str(&value) else {
            continue;
        };
        let name = HeaderName::from_static(name);
        if name == http::header::VARY {
            headers.append(name, value);
        } else {
            headers.insert(name, value);
        }
    }
    if let Some(hsts) = reply.hsts {
        if !headers.contains_key(STRICT_TRANSPORT_SECURITY) {
            headers.insert(STRICT_TRANSPORT_SECURITY, hsts.clone());
        }
    }
    if let Some((rules, vars)) = &reply.rules {
        rules.apply(&mut headers, vars);
    }
    let (mut parts, ()) = http::Response::new(()).into_parts();
    parts.status = response.status;
    parts.version = response.version;
    parts.headers = headers;
    let mut head = Box::new(ResponseHeader::from(parts));
    let reason = response.get_reason_phrase();
    if reason != response.status.canonical_reason() {
        head.set_reason_phrase(reason)
            .map_err(|_| EdgeError::Upstream(pingora::ErrorType::InvalidHTTPHeader))?;
    }
    Ok(head)
}

/// The fields the server's Connection names (they described its connection, not the response).
fn nominated(headers: &HeaderMap) -> [Option<HeaderName>; MAX_CONNECTION_OPTIONS] {
    let mut named: [Option<HeaderName>; MAX_CONNECTION_OPTIONS] = Default::default();
    let options = headers
        .get_all(CONNECTION)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b','))
        .map(<[u8]>::trim_ascii)
        // The usual options name no field; the client connection's own Connection is set by
        // the session writing the head.
        .filter(|t| !t.eq_ignore_ascii_case(b"keep-alive") && !t.eq_ignore_ascii_case(b"close"))
        .filter_map(|t| HeaderName::from_bytes(t).ok());
    for (slot, name) in named.iter_mut().zip(options) {
        *slot = Some(name);
    }
    named
}

/// `insert nocache`: pins the client with a cookie when the pick asks for it, and keeps shared
/// caches from storing the answer.
fn sticky_cookie(reply: &Reply<'_>, headers: &mut HeaderMap) {
    let Some(sticky) = &reply.upstream.sticky else {
        return;
    };
    let StickyMode::Cookie { name } = &sticky.mode else {
        return;
    };
    if !reply.pick.set_cookie {
        return;
    }
    let cookie = set_cookie(name, reply.pick.member.id, Some(sticky.ttl), reply.secure);
    if let Ok(cookie) = HeaderValue::from_str(&cookie) {
        headers.append(SET_COOKIE, cookie);
    }
    let existing = headers.get(CACHE_CONTROL).and_then(|v| v.to_str().ok());
    if let Some(value) = private_cache_control(existing) {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(CACHE_CONTROL, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::{Outcome, RequestInfo};
    use crate::runtime::test_world::{config, listener, route};
    use crate::runtime::{Live, Snapshot};

    fn get<'a>(h: &'a ResponseHeader, name: &str) -> Vec<&'a str> {
        h.headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().expect("text"))
            .collect()
    }

    #[test]
    fn the_client_s_head_keeps_the_answer_and_drops_the_server_s_details() {
        let cfg = config(
            vec![listener("https", 443, true, false)],
            vec![route("a", None, "u")],
        );
        let live = Live::new().expect("live");
        let snap = Snapshot::compile(&cfg, 1, &live, None);
        let upstream = &snap.upstreams()[0];
        live.pools.adopt(&upstream.pool, &cfg.upstreams["u"]);
        let headers = HeaderMap::new();
        let info = RequestInfo {
            client_ip: None,
            headers: &headers,
            tried: &[],
            inference: None,
        };
        let Outcome::Picked(pick) =
            upstream
                .pool
                .select(&upstream.rules(), &info, std::time::Instant::now())
        else {
            panic!("no pick");
        };
        let mut server = ResponseHeader::build(201, None).expect("head");
        for (name, value) in [
            ("Server", "secret/1.0"),
            ("Connection", "keep-alive, X-Hop"),
            ("X-Hop", "1"),
            ("Keep-Alive", "timeout=5"),
            ("Content-Type", "text/plain"),
            ("Set-Cookie", "a=1"),
            ("Set-Cookie", "b=2"),
        ] {
            server.append_header(name, value).expect("header");
        }
        let id = HeaderValue::from_static("req-9");
        let hsts = HeaderValue::from_static("max-age=60");
        let reply = Reply {
            upstream,
            pick: &pick,
            secure: true,
            guard: None,
            cors: vec![("access-control-allow-origin", "https://a.example".into())],
            hsts: Some(&hsts),
            request_id: &id,
            rules: None,
        };
        let head = downstream_head(&server, reply).expect("head");
        assert_eq!(head.status.as_u16(), 201);
        for gone in ["server", "x-hop", "keep-alive"] {
            assert!(get(&head, gone).is_empty(), "{gone} reached the client");
        }
        assert_eq!(get(&head, "set-cookie"), ["a=1", "b=2"]);
        assert_eq!(get(&head, "content-type"), ["text/plain"]);
        assert_eq!(get(&head, "x-request-id"), ["req-9"]);
        assert_eq!(get(&head, "strict-transport-security"), ["max-age=60"]);
        assert_eq!(
            get(&head, "access-control-allow-origin"),
            ["https://a.example"]
        );
    }

    #[test]
    fn the_server_s_connection_fields_do_not_reach_the_client() {
        let mut r = ResponseHeader::build(200, None).expect("head");
        r.insert_header("connection", "keep-alive, x-hop")
            .expect("h");
        r.insert_header("x-hop", "1").expect("h");
        r.insert_header("keep-alive", "timeout=5").expect("h");
        r.insert_header("x-end", "2").expect("h");
        let named = nominated(&r.headers);
        assert_eq!(named.iter().flatten().count(), 1);
        assert_eq!(named[0].as_ref().map(HeaderName::as_str), Some("x-hop"));
    }
}
