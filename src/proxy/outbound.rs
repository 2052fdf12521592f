//! The request head a server receives, built from the client's: HTTP/1.1 always; hop-by-hop
//! fields removed (Connection and the fields it names, Keep-Alive, TE, Trailer, Proxy-*,
//! Transfer-Encoding, HTTP2-Settings, Upgrade unless the request is a valid WebSocket upgrade);
//! `Host` from the authority of an h2 or absolute-form request (sent in origin-form); the route's
//! path prefix stripped, the sticky cookie and the client's API key taken off; the forwarding
//! headers set; and the body framed by Content-Length when the client gave one, else chunked.
//! Pure: a function of the client's head and the request's facts.

use http::header::{
    AUTHORIZATION, CONNECTION, CONTENT_LENGTH, HOST, PROXY_AUTHENTICATE, PROXY_AUTHORIZATION, TE,
    TRAILER, TRANSFER_ENCODING, UPGRADE,
};
use http::{HeaderName, HeaderValue, Method, Uri, Version};
use pingora::http::RequestHeader;
use pingora::protocols::http::authority::raw_target_authority;

use super::balancing;
use super::error::EdgeError;
use super::forwarded::{self, Hop, PeerText};
use crate::routing::strip_path_prefix;
use crate::runtime::RouteTarget;

/// Connection options looked at, at most: more is refused (a bound on per-request work).
pub const MAX_CONNECTION_OPTIONS: usize = 10;

static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
static HTTP2_SETTINGS: HeaderName = HeaderName::from_static("http2-settings");
static CHUNKED: HeaderValue = HeaderValue::from_static("chunked");
static UPGRADE_OPTION: HeaderValue = HeaderValue::from_static("Upgrade");
static WEBSOCKET: HeaderValue = HeaderValue::from_static("websocket");

/// What the upstream head depends on besides the client's head.
#[derive(Debug, Clone, Copy)]
pub struct Outbound<'a> {
    pub target: &'a RouteTarget,
    pub peer: &'a PeerText,
    pub hop: Hop,
    /// X-Forwarded-Proto of the listener.
    pub proto: &'a HeaderValue,
    /// X-Forwarded-Host: the normalized host the route matched.
    pub forwarded_host: Option<&'a HeaderValue>,
    /// The client sends a body (or may still: chunked, or an h2 stream not yet ended).
    pub has_body: bool,
    /// The request is a valid WebSocket upgrade ([`is_websocket_upgrade`]).
    pub websocket: bool,
}

/// Whether `head` is a valid WebSocket upgrade: an HTTP/1.1 GET with `Upgrade: websocket` and
/// the `upgrade` option in Connection (RFC 9110 §7.8, RFC 6455 §4.1).
pub fn is_websocket_upgrade(head: &RequestHeader) -> bool {
    head.version == Version::HTTP_11
        && head.method == Method::GET
        && head
            .headers
            .get(UPGRADE)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"))
        && connection_options(head).any(|option| option.eq_ignore_ascii_case(b"upgrade"))
}

/// The tokens of every Connection field.
fn connection_options(head: &RequestHeader) -> impl Iterator<Item = &[u8]> {
    head.headers
        .get_all(CONNECTION)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|t| !t.is_empty())
}

/// The head to send upstream for the client's `head`.
pub fn upstream_head(
    head: &RequestHeader,
    out: &Outbound<'_>,
) -> Result<Box<RequestHeader>, EdgeError> {
    let mut req = Box::new(head.clone());
    req.set_version(Version::HTTP_11);
    authority_to_host(&mut req)?;
    strip_hop_by_hop(&mut req)?;
    if out.websocket {
        req.insert_header(CONNECTION, UPGRADE_OPTION.clone())
            .map_err(|_| EdgeError::BadRequest)?;
        req.insert_header(UPGRADE, WEBSOCKET.clone())
            .map_err(|_| EdgeError::BadRequest)?;
    }
    let target = out.target;
    if target.strip_prefix {
        let path = strip_path_prefix(&target.path_prefix, req.uri.path());
        let rewritten = match req.uri.query() {
            Some(q) => format!("{path}?{q}"),
            None => path.into_owned(),
        };
        let uri: Uri = rewritten.parse().map_err(|_| EdgeError::BadRequest)?;
        req.set_uri(uri);
    }
    balancing::strip_sticky_cookie(&target.upstream, &mut req)?;
    // GPU nodes never see a client's API key: it is removed or replaced by ours.
    if let Some((header, replacement)) = target.guard.as_ref().and_then(|g| g.key_rewrite()) {
        req.remove_header(header);
        if let Some(value) = replacement {
            req.insert_header(AUTHORIZATION, value.clone())
                .map_err(|_| EdgeError::BadRequest)?;
        }
    }
    let fwd = forwarded::forwarded(&req.headers, out.peer, out.hop);
    let set = |req: &mut RequestHeader, name: &'static str, value: HeaderValue| {
        req.insert_header(name, value)
            .map_err(|_| EdgeError::BadRequest)
    };
    set(&mut req, forwarded::X_FORWARDED_FOR, fwd.forwarded_for)?;
    set(&mut req, forwarded::X_FORWARDED_PROTO, out.proto.clone())?;
    match out.forwarded_host {
        Some(host) => set(&mut req, forwarded::X_FORWARDED_HOST, host.clone())?,
        None => {
            req.remove_header(forwarded::X_FORWARDED_HOST);
        }
    }
    set(&mut req, forwarded::X_REAL_IP, fwd.client_ip.clone())?;
    set(&mut req, forwarded::X_CLIENT_IP, fwd.client_ip)?;
    if out.has_body && !req.headers.contains_key(CONTENT_LENGTH) {
        req.insert_header(TRANSFER_ENCODING, CHUNKED.clone())
            .map_err(|_| EdgeError::BadRequest)?;
    }
    Ok(req)
}

/// Gives an h2 request (`:authority`) or an absolute-form HTTP/1 request its `Host` and sends
/// it in origin-form. The parsers already refused a `Host` that differs from the authority.
fn authority_to_host(req: &mut RequestHeader) -> Result<(), EdgeError> {
    let authority: Option<HeaderValue> = match req.uri.authority() {
        Some(authority) => {
            Some(HeaderValue::from_str(authority.as_str()).map_err(|_| EdgeError::BadRequest)?)
        }
        None => match raw_target_authority(req.raw_path()).authority() {
            Some(bytes) => Some(HeaderValue::from_bytes(bytes).map_err(|_| EdgeError::BadRequest)?),
            None => None,
        },
    };
    let Some(authority) = authority else {
        return Ok(());
    };
    if authority.as_bytes().contains(&b'@') {
        return Err(EdgeError::BadRequest);
    }
    if req.headers.get(HOST) != Some(&authority) {
        req.insert_header(HOST, authority)
            .map_err(|_| EdgeError::BadRequest)?;
    }
    // Origin-form: the path and query alone.
    let origin: Uri = match req.uri.path_and_query() {
        Some(pq) => Uri::from(pq.clone()),
        None => Uri::from_static("/"),
    };
    req.set_uri(origin);
    Ok(())
}

/// Removes the hop-by-hop fields (RFC 9110 §7.6.1): the ones Connection names first (at most
/// [`MAX_CONNECTION_OPTIONS`]; naming Host or an X-Forwarded field is refused), then the
/// standard ones.
fn strip_hop_by_hop(req: &mut RequestHeader) -> Result<(), EdgeError> {
    let mut named: [Option<HeaderName>; MAX_CONNECTION_OPTIONS] = Default::default();
    for (i, option) in connection_options(req).enumerate() {
        if i >= MAX_CONNECTION_OPTIONS {
            return Err(EdgeError::BadRequest);
        }
        let Ok(name) = HeaderName::from_bytes(option) else {
            return Err(EdgeError::BadRequest);
        };
        if matches!(
            name.as_str(),
            "host" | "x-forwarded-for" | "x-forwarded-host" | "x-forwarded-proto"
        ) {
            return Err(EdgeError::BadRequest);
        }
        named[i] = Some(name);
    }
    for name in named.iter().flatten() {
        req.remove_header(name);
    }
    for name in [
        &CONNECTION,
        &KEEP_ALIVE,
        &PROXY_CONNECTION,
        &PROXY_AUTHENTICATE,
        &PROXY_AUTHORIZATION,
        &TE,
        &TRAILER,
        &TRANSFER_ENCODING,
        &UPGRADE,
        &HTTP2_SETTINGS,
    ] {
        req.remove_header(name);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::*;
    use crate::runtime::test_world::{config, listener, route};
    use crate::runtime::{Live, Snapshot};

    fn snapshot(strip: bool) -> Snapshot {
        let mut r = route("a", None, "u");
        if strip {
            r.path_prefix = "/owui/".into();
            r.strip_prefix = true;
        }
        let cfg = config(vec![listener("https", 443, true, false)], vec![r]);
        Snapshot::compile(&cfg, 1, &Live::new().expect("live"), None)
    }

    fn h1(lines: &[(&str, &str)], target: &str) -> RequestHeader {
        let mut h = RequestHeader::build("POST", target.as_bytes(), None).expect("head");
        for (name, value) in lines {
            h.append_header(name.to_string(), *value).expect("header");
        }
        h
    }

    fn build(
        snap: &Snapshot,
        head: &RequestHeader,
        has_body: bool,
    ) -> Result<Box<RequestHeader>, EdgeError> {
        let peer = PeerText::new(Some(IpAddr::from([192, 0, 2, 1])));
        let host = HeaderValue::from_static("a.test");
        let out = Outbound {
            target: &snap.targets()[0],
            peer: &peer,
            hop: Hop {
                client: peer.ip,
                keep_chain: false,
            },
            proto: &forwarded::PROTO_HTTPS,
            forwarded_host: Some(&host),
            has_body,
            websocket: is_websocket_upgrade(head),
        };
        upstream_head(head, &out)
    }

    fn get<'a>(h: &'a RequestHeader, name: &str) -> Vec<&'a str> {
        h.headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().expect("text"))
            .collect()
    }

    #[test]
    fn hop_by_hop_fields_and_the_ones_connection_names_are_removed() {
        let snap = snapshot(false);
        let head = h1(
            &[
                ("Host", "a.test"),
                ("Connection", "keep-alive, X-Secret"),
                ("X-Secret", "1"),
                ("Keep-Alive", "timeout=5"),
                ("TE", "trailers"),
                ("Proxy-Authorization", "Basic x"),
                ("Upgrade", "h2c"),
                ("HTTP2-Settings", "AAA"),
                ("Transfer-Encoding", "chunked"),
                ("X-Kept", "yes"),
            ],
            "/x",
        );
        let up = build(&snap, &head, true).expect("head");
        for gone in [
            "connection",
            "x-secret",
            "keep-alive",
            "te",
            "proxy-authorization",
            "upgrade",
            "http2-settings",
        ] {
            assert!(get(&up, gone).is_empty(), "{gone} forwarded");
        }
        assert_eq!(get(&up, "x-kept"), ["yes"]);
        assert_eq!(get(&up, "transfer-encoding"), ["chunked"]);
        assert_eq!(get(&up, "x-forwarded-for"), ["192.0.2.1"]);
        assert_eq!(get(&up, "x-forwarded-proto"), ["https"]);
        assert_eq!(get(&up, "x-forwarded-host"), ["a.test"]);
        assert_eq!(get(&up, "x-real-ip"), ["192.0.2.1"]);
        assert_eq!(up.version, Version::HTTP_11);
    }

    #[test]
    fn framing_follows_the_client_s_length_or_becomes_chunked() {
        let snap = snapshot(false);
        let sized = h1(&[("Host", "a.test"), ("Content-Length", "5")], "/");
        let up = build(&snap, &sized, true).expect("head");
        assert_eq!(get(&up, "content-length"), ["5"]);
        assert!(get(&up, "transfer-encoding").is_empty());
        let empty = h1(&[("Host", "a.test")], "/");
        let up = build(&snap, &empty, false).expect("head");
        assert!(get(&up, "transfer-encoding").is_empty() && get(&up, "content-length").is_empty());
    }

    #[test]
    fn only_valid_websocket_upgrades_keep_their_upgrade() {
        let snap = snapshot(false);
        let mut ws = h1(
            &[
                ("Host", "a.test"),
                ("Connection", "keep-alive, Upgrade"),
                ("Upgrade", "WebSocket"),
                ("Sec-WebSocket-Key", "k"),
            ],
            "/ws",
        );
        ws.set_method(Method::GET);
        assert!(is_websocket_upgrade(&ws));
        let up = build(&snap, &ws, false).expect("head");
        assert_eq!(get(&up, "upgrade"), ["websocket"]);
        assert_eq!(get(&up, "connection"), ["Upgrade"]);
        assert_eq!(get(&up, "sec-websocket-key"), ["k"]);
        // Without the upgrade option in Connection it is no upgrade.
        let mut bare = h1(&[("Host", "a.test"), ("Upgrade", "websocket")], "/ws");
        bare.set_method(Method::GET);
        assert!(!is_websocket_upgrade(&bare));
        assert!(get(&build(&snap, &bare, false).expect("head"), "upgrade").is_empty());
    }

    #[test]
    fn connection_may_not_name_protected_fields_or_too_many() {
        let snap = snapshot(false);
        let host = h1(&[("Host", "a.test"), ("Connection", "Host")], "/");
        assert_eq!(
            build(&snap, &host, false).err(),
            Some(EdgeError::BadRequest)
        );
        let xff = h1(
            &[("Host", "a.test"), ("Connection", "x-forwarded-for")],
            "/",
        );
        assert_eq!(build(&snap, &xff, false).err(), Some(EdgeError::BadRequest));
        let many = h1(
            &[("Host", "a.test"), ("Connection", "a,b,c,d,e,f,g,h,i,j,k")],
            "/",
        );
        assert_eq!(
            build(&snap, &many, false).err(),
            Some(EdgeError::BadRequest)
        );
    }

    #[test]
    fn authorities_become_host_and_origin_form() {
        let snap = snapshot(false);
        let absolute = h1(&[("Host", "a.test")], "http://a.test/p?q=1");
        let up = build(&snap, &absolute, false).expect("head");
        assert_eq!(up.raw_path(), b"/p?q=1");
        assert_eq!(get(&up, "host"), ["a.test"]);
        let mut h2 = RequestHeader::build("GET", b"/", None).expect("head");
        h2.set_uri("https://a.test:8443/v1/x?y".parse().expect("uri"));
        h2.set_version(Version::HTTP_2);
        let up = build(&snap, &h2, false).expect("head");
        assert_eq!(get(&up, "host"), ["a.test:8443"]);
        assert_eq!(up.raw_path(), b"/v1/x?y");
        assert_eq!(up.version, Version::HTTP_11);
    }

    #[test]
    fn a_stripped_prefix_keeps_the_query() {
        let snap = snapshot(true);
        let head = h1(&[("Host", "a.test")], "/owui/api/x?y=1");
        let up = build(&snap, &head, false).expect("head");
        assert_eq!(up.raw_path(), b"/api/x?y=1");
    }
}
