//! The request head a server receives, built from the client's: HTTP/1.1 always; hop-by-hop
//! fields removed (Connection and the fields it names, Keep-Alive, TE, Trailer, Proxy-*,
//! Transfer-Encoding, HTTP2-Settings, Upgrade unless the request is a valid WebSocket upgrade);
//! `Host` from the authority of an h2 or absolute-form request (sent in origin-form); the path
//! rewritten by the route (`rewrite`, `strip_prefix`), the sticky cookie and the client's API
//! key taken off; the forwarding headers and the client certificate headers set (the client's own
//! copies of both removed); the route's `headers.request` applied after them; and the body
//! framed by Content-Length when the client gave one, else chunked. Pure: a function of the
//! client's head and the request's facts.

use http::header::{
    AUTHORIZATION, CONNECTION, CONTENT_LENGTH, COOKIE, HOST, PROXY_AUTHENTICATE,
    PROXY_AUTHORIZATION, TE, TRAILER, TRANSFER_ENCODING, UPGRADE,
};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri, Version};
use pingora::http::RequestHeader;
use pingora::protocols::http::authority::raw_target_authority;

use super::balancing;
use super::error::EdgeError;
use super::forwarded::{self, Hop, PeerText};
use crate::observe::request_id::REQUEST_ID;
use crate::routing::headers::{HeaderRuleSet, TemplateVars};
use crate::runtime::RouteTarget;
use crate::tls::client_auth::{add_client_cert_headers, is_client_cert_header, ClientCertHeaders};

/// Connection options looked at, at most: more is refused (a bound on per-request work).
pub const MAX_CONNECTION_OPTIONS: usize = 10;

static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
static HTTP2_SETTINGS: HeaderName = HeaderName::from_static("http2-settings");
static CHUNKED: HeaderValue = HeaderValue::from_static("chunked");
static UPGRADE_OPTION: HeaderValue = HeaderValue::from_static("Upgrade");
static WEBSOCKET: HeaderValue = HeaderValue::from_static("websocket");
static TRACEPARENT: HeaderName = HeaderName::from_static(crate::otel::context::TRACEPARENT);

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
    /// X-Request-Id.
    pub request_id: &'a HeaderValue,
    /// The client sends a body (or may still: chunked, or an h2 stream not yet ended).
    pub has_body: bool,
    /// The request is a valid WebSocket upgrade ([`is_websocket_upgrade`]).
    pub websocket: bool,
    /// The attempt's span (`otel:`), replacing the client's `traceparent`.
    pub traceparent: Option<&'a HeaderValue>,
    /// The listener asks for client certificates (`client_auth`).
    pub client_auth: bool,
    /// The connection's verified client certificate.
    pub client_cert: Option<&'a ClientCertHeaders>,
    /// The route's `headers.request` and what their placeholders stand for.
    pub rules: Option<(&'a HeaderRuleSet, TemplateVars<'a>)>,
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
        && connection_options(&head.headers).any(|option| option.eq_ignore_ascii_case(b"upgrade"))
}

/// The tokens of every Connection field.
fn connection_options(headers: &HeaderMap) -> impl Iterator<Item = &[u8]> {
    headers
        .get_all(CONNECTION)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|t| !t.is_empty())
}

/// The fields the client's Connection names (RFC 9110 §7.6.1), at most
/// [`MAX_CONNECTION_OPTIONS`]; naming Host or an X-Forwarded field is refused.
fn nominated(
    headers: &HeaderMap,
) -> Result<[Option<HeaderName>; MAX_CONNECTION_OPTIONS], EdgeError> {
    let mut named: [Option<HeaderName>; MAX_CONNECTION_OPTIONS] = Default::default();
    for (i, option) in connection_options(headers).enumerate() {
        if i >= MAX_CONNECTION_OPTIONS {
            return Err(EdgeError::BadRequest);
        }
        let name = HeaderName::from_bytes(option).map_err(|_| EdgeError::BadRequest)?;
        if matches!(
            name.as_str(),
            "host" | "x-forwarded-for" | "x-forwarded-host" | "x-forwarded-proto"
        ) {
            return Err(EdgeError::BadRequest);
        }
        named[i] = Some(name);
    }
    Ok(named)
}

/// Fields the client's head does not pass on: hop-by-hop ones and the ones set here.
fn replaced(name: &HeaderName) -> bool {
    name == CONNECTION
        || name == TE
        || name == TRAILER
        || name == TRANSFER_ENCODING
        || name == UPGRADE
        || name == PROXY_AUTHENTICATE
        || name == PROXY_AUTHORIZATION
        || name == KEEP_ALIVE
        || name == PROXY_CONNECTION
        || name == HTTP2_SETTINGS
        || name == forwarded::X_FORWARDED_FOR
        || name == forwarded::X_FORWARDED_PROTO
        || name == forwarded::X_FORWARDED_HOST
        || name == forwarded::X_REAL_IP
        || name == forwarded::X_CLIENT_IP
        || name == REQUEST_ID
}

/// The head to send upstream for the client's `head`.
pub fn upstream_head(
    head: &RequestHeader,
    out: &Outbound<'_>,
) -> Result<Box<RequestHeader>, EdgeError> {
    let named = nominated(&head.headers)?;
    let authority = authority(head)?;
    let mut headers = HeaderMap::with_capacity(head.headers.len() + 8);
    for (name, value) in head.headers.iter() {
        let skip = replaced(name)
            || is_client_cert_header(name)
            || (authority.is_some() && name == HOST)
            || named.iter().flatten().any(|n| n == name);
        if !skip {
            headers.append(name.clone(), value.clone());
        }
    }
    // The copy above left out the fields appended below (Host only when an authority replaces
    // it), so appending adds each once without looking for a copy to replace; those the copy
    // may still hold (the API key, traceparent, Transfer-Encoding) are inserted.
    if let Some(authority) = authority {
        headers.append(HOST, authority);
    }
    if out.websocket {
        headers.append(CONNECTION, UPGRADE_OPTION.clone());
        headers.append(UPGRADE, WEBSOCKET.clone());
    }
    let target = out.target;
    if headers.contains_key(COOKIE) {
        balancing::strip_sticky_cookie(&target.upstream, &mut headers)?;
    }
    // GPU nodes never see a client's API key: it is removed or replaced by ours.
    if let Some((header, replacement)) = target.guard.as_ref().and_then(|g| g.key_rewrite()) {
        headers.remove(header);
        if let Some(value) = replacement {
            headers.insert(AUTHORIZATION, value.clone());
        }
    }
    let fwd = forwarded::forwarded(&head.headers, out.peer, out.hop);
    headers.append(forwarded::X_FORWARDED_FOR.clone(), fwd.forwarded_for);
    headers.append(forwarded::X_FORWARDED_PROTO.clone(), out.proto.clone());
    if let Some(host) = out.forwarded_host {
        headers.append(forwarded::X_FORWARDED_HOST.clone(), host.clone());
    }
    headers.append(forwarded::X_REAL_IP.clone(), fwd.client_ip.clone());
    headers.append(forwarded::X_CLIENT_IP.clone(), fwd.client_ip);
    headers.append(REQUEST_ID.clone(), out.request_id.clone());
    if let Some(traceparent) = out.traceparent {
        headers.insert(TRACEPARENT.clone(), traceparent.clone());
    }
    add_client_cert_headers(&mut headers, out.client_auth, out.client_cert);
    if let Some((rules, vars)) = &out.rules {
        // After ferrogate's own: an operator's rule may override a forwarding header.
        rules.apply(&mut headers, vars);
    }
    if out.has_body && !headers.contains_key(CONTENT_LENGTH) {
        headers.insert(TRANSFER_ENCODING, CHUNKED.clone());
    }
    let (mut parts, ()) = http::Request::new(()).into_parts();
    parts.method = head.method.clone();
    parts.uri = origin_form(head, target)?;
    parts.version = Version::HTTP_11;
    parts.headers = headers;
    let mut req = Box::new(RequestHeader::from(parts));
    if !head.raw_path_is_utf8() && target.rewrite.is_none() {
        // A target that is not UTF-8 goes on byte for byte.
        req.set_raw_path(head.raw_path())
            .map_err(|_| EdgeError::BadRequest)?;
    }
    Ok(req)
}

/// The `Host` an h2 request (`:authority`) or an absolute-form HTTP/1 request gets from its
/// authority (the parsers already refused a `Host` that differs from it).
fn authority(head: &RequestHeader) -> Result<Option<HeaderValue>, EdgeError> {
    let value = match head.uri.authority() {
        Some(authority) => HeaderValue::from_str(authority.as_str()),
        None => match raw_target_authority(head.raw_path()).authority() {
            Some(bytes) => HeaderValue::from_bytes(bytes),
            None => return Ok(None),
        },
    }
    .map_err(|_| EdgeError::BadRequest)?;
    if value.as_bytes().contains(&b'@') {
        return Err(EdgeError::BadRequest);
    }
    Ok(Some(value))
}

/// The request target in origin-form (path and query), the path rewritten by the route.
fn origin_form(head: &RequestHeader, target: &RouteTarget) -> Result<Uri, EdgeError> {
    let Some(pq) = head.uri.path_and_query() else {
        return Ok(Uri::from_static("/"));
    };
    let Some(rewrite) = &target.rewrite else {
        return Ok(Uri::from(pq.clone()));
    };
    let path = rewrite.apply(pq.path());
    let rewritten = match pq.query() {
        Some(q) => format!("{path}?{q}"),
        None => path.into_owned(),
    };
    rewritten.parse().map_err(|_| EdgeError::BadRequest)
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
        build_traced(snap, head, has_body, None)
    }

    fn build_traced(
        snap: &Snapshot,
        head: &RequestHeader,
        has_body: bool,
        traceparent: Option<&HeaderValue>,
    ) -> Result<Box<RequestHeader>, EdgeError> {
        build_with(snap, head, has_body, traceparent, (false, None))
    }

    fn build_with(
        snap: &Snapshot,
        head: &RequestHeader,
        has_body: bool,
        traceparent: Option<&HeaderValue>,
        (client_auth, client_cert): (bool, Option<&ClientCertHeaders>),
    ) -> Result<Box<RequestHeader>, EdgeError> {
        let peer = PeerText::new(Some(IpAddr::from([192, 0, 2, 1])));
        let host = HeaderValue::from_static("a.test");
        let id = HeaderValue::from_static("req-1");
        let target = &snap.targets()[0];
        let out = Outbound {
            target,
            request_id: &id,
            peer: &peer,
            hop: Hop {
                client: peer.ip,
                keep_chain: false,
            },
            proto: &forwarded::PROTO_HTTPS,
            forwarded_host: Some(&host),
            has_body,
            websocket: is_websocket_upgrade(head),
            traceparent,
            client_auth,
            client_cert,
            rules: target.request_headers.as_ref().map(|rules| {
                let vars = TemplateVars {
                    host: "a.test",
                    path: head.uri.path_and_query().map_or("/", |p| p.as_str()),
                    scheme: "https",
                    client_ip: peer.ip,
                    request_id: "req-1",
                };
                (rules, vars)
            }),
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
        assert_eq!(get(&up, "x-request-id"), ["req-1"]);
        assert_eq!(up.version, Version::HTTP_11);
    }

    #[test]
    fn a_traced_attempt_s_traceparent_replaces_the_client_s_and_tracestate_stays() {
        let snap = snapshot(false);
        let client = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let head = h1(
            &[
                ("Host", "a.test"),
                ("traceparent", client),
                ("tracestate", "vendor=abc"),
            ],
            "/",
        );
        let untraced = build(&snap, &head, false).expect("head");
        assert_eq!(get(&untraced, "traceparent"), [client]);
        let ours =
            HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-1111111111111111-01");
        let traced = build_traced(&snap, &head, false, Some(&ours)).expect("head");
        assert_eq!(get(&traced, "traceparent"), [ours.to_str().unwrap()]);
        assert_eq!(get(&traced, "tracestate"), ["vendor=abc"]);
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

    #[test]
    fn route_rules_rewrite_the_path_and_edit_headers_after_ours() {
        use crate::config::model::{HeaderRules, PathPattern, Rewrite, Template, TemplatePart};
        let mut r = route("a", None, "u");
        r.path_prefix = "/old/".into();
        r.rules.rewrite = Some(Rewrite::Regex {
            pattern: PathPattern::new("^/old/(.*)$").expect("regex"),
            to: "/new/$1".into(),
        });
        let name = |n: &'static str| HeaderName::from_static(n);
        r.rules.request_headers = HeaderRules {
            remove: vec![name("x-internal")],
            set: vec![(
                name("x-forwarded-proto"),
                Template {
                    parts: vec![TemplatePart::Literal("spdy".into())],
                },
            )],
            add: vec![(
                name("x-trace"),
                Template {
                    parts: vec![
                        TemplatePart::Literal("id=".into()),
                        TemplatePart::RequestId,
                        TemplatePart::Literal(" from ".into()),
                        TemplatePart::ClientIp,
                    ],
                },
            )],
        };
        let cfg = config(vec![listener("https", 443, true, false)], vec![r]);
        let snap = Snapshot::compile(&cfg, 1, &Live::new().expect("live"), None);
        let head = h1(
            &[
                ("Host", "a.test"),
                ("X-Internal", "secret"),
                ("X-Trace", "client"),
                ("X-Client-Cert-Verify", "SUCCESS"),
                ("X-Client-Cert-Subject", "CN=forged"),
            ],
            "/old/a/b?x=1",
        );
        let out = build(&snap, &head, false).expect("head");
        assert_eq!(out.uri, "/new/a/b?x=1");
        assert!(get(&out, "x-internal").is_empty());
        assert_eq!(get(&out, "x-forwarded-proto"), ["spdy"]);
        assert_eq!(get(&out, "x-trace"), ["client", "id=req-1 from 192.0.2.1"]);
        // Without client_auth the client's copies go; with it, the connection's own come.
        assert!(get(&out, "x-client-cert-verify").is_empty());
        assert!(get(&out, "x-client-cert-subject").is_empty());
        let own = ClientCertHeaders {
            verify: HeaderValue::from_static("SUCCESS"),
            subject: Some(HeaderValue::from_static("CN=alice")),
            fingerprint: Some(HeaderValue::from_static("ab12")),
        };
        let out = build_with(&snap, &head, false, None, (true, Some(&own))).expect("head");
        assert_eq!(get(&out, "x-client-cert-subject"), ["CN=alice"]);
        assert_eq!(get(&out, "x-client-cert-fingerprint"), ["ab12"]);
        let out = build_with(&snap, &head, false, None, (true, None)).expect("head");
        assert_eq!(get(&out, "x-client-cert-verify"), ["NONE"]);
        assert!(get(&out, "x-client-cert-subject").is_empty());
    }
}
