//! The routing decision for one request: a pure function of the listener's view of the snapshot,
//! the connection's peer and the request head. ACME HTTP-01 paths on the plain `http` listener
//! come first, then the host (from `Host`, or the URI authority), the route (the first in the
//! routing table's order whose `match` the request meets), and, without one, the redirect to
//! https or 404.

use std::net::IpAddr;
use std::sync::Arc;

use http::header::HOST;
use http::HeaderValue;
use pingora::http::RequestHeader;

use crate::acme::http01::CHALLENGE_PREFIX;
use crate::routing::conditions::RequestFacts;
use crate::routing::normalize_host;
use crate::runtime::{ListenerView, RouteTarget};
use crate::security::client::{self, ClientAddr};

/// What to do with a request.
#[derive(Debug)]
pub enum Decision {
    /// Proxy it along the matched route.
    Route(Routed),
    /// An ACME HTTP-01 challenge path on the plain `http` listener: answered from this
    /// instance's tokens, then the cluster's.
    Challenge,
    /// A permanent redirect to this https location.
    Redirect(String),
    /// Answer at the edge with this status: 400 (no readable host), 404 (no route), 503 (the
    /// listener has no view in the configuration in force).
    Refuse(u16),
}

/// The matched route and what the request path needs from the decision.
#[derive(Debug)]
pub struct Routed {
    pub target: Arc<RouteTarget>,
    /// The normalized host, as X-Forwarded-Host carries it.
    pub forwarded_host: Option<HeaderValue>,
    /// `Strict-Transport-Security` for the response (TLS listeners with `tls.hsts`).
    pub hsts: Option<HeaderValue>,
    /// The client: the peer, or what a trusted proxy's X-Forwarded-For names.
    pub client: ClientAddr,
}

/// The connection a request arrived on, as the routing decision sees it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Arrival {
    /// The peer (the address a PROXY header named, or the socket's).
    pub peer: Option<IpAddr>,
    /// The TLS handshake verified a client certificate.
    pub client_cert: bool,
}

/// Decides what to do with `head` arriving as `arrival` on a listener seen as `view`. `acme` is
/// true on the plain `http` listener, where HTTP-01 challenges are answered.
pub fn decide(
    view: Option<&ListenerView>,
    acme: bool,
    arrival: Arrival,
    head: &RequestHeader,
) -> Decision {
    let Some(view) = view else {
        return Decision::Refuse(503);
    };
    let path = head.uri.path();
    if acme && path.starts_with(CHALLENGE_PREFIX) {
        return Decision::Challenge;
    }
    let raw_host = head
        .headers
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| head.uri.authority().map(|a| a.as_str()));
    let Some(host) = raw_host.and_then(normalize_host) else {
        return Decision::Refuse(400);
    };
    let client = client::resolve(arrival.peer, &head.headers, &view.trusted_proxies);
    let facts = RequestFacts {
        method: &head.method,
        headers: &head.headers,
        query: head.uri.query(),
        client_ip: client.ip,
        client_cert: arrival.client_cert,
    };
    let Some(rule) = view
        .router
        .find_with(&host, path, |target| target.matches(&facts))
    else {
        return match view.redirect_https_port {
            Some(port) => Decision::Redirect(https_location(
                &host,
                port,
                head.uri.path_and_query().map_or("/", |p| p.as_str()),
            )),
            None => Decision::Refuse(404),
        };
    };
    let forwarded_host = match head.headers.get(HOST) {
        // The common case: the client's Host is already normalized (no port, lowercase).
        Some(value) if value.as_bytes() == host.as_bytes() => Some(value.clone()),
        _ => HeaderValue::from_str(&host).ok(),
    };
    Decision::Route(Routed {
        target: rule.target.clone(),
        forwarded_host,
        hsts: view.hsts.clone(),
        client,
    })
}

/// The ACME token of a challenge path, when it can be one: 1 to 128 base64url characters
/// (RFC 8555 §8.3); anything else never reaches the cluster.
pub fn challenge_token(path: &str) -> Option<&str> {
    let token = path.strip_prefix(CHALLENGE_PREFIX)?;
    let valid = (1..=128).contains(&token.len())
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    valid.then_some(token)
}

/// `https://host[:port]/path?query` for the port-80 redirect.
fn https_location(host: &str, port: u16, path_and_query: &str) -> String {
    if port == 443 {
        format!("https://{host}{path_and_query}")
    } else {
        format!("https://{host}:{port}{path_and_query}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::test_world::{config, listener, route};
    use crate::runtime::{Live, Snapshot};

    fn snapshot() -> Snapshot {
        let cfg = config(
            vec![
                listener("http", 80, false, true),
                listener("https", 443, true, false),
            ],
            vec![route("a", None, "u"), route("plain", Some("http"), "u")],
        );
        let live = Live::new().expect("live state");
        Snapshot::compile(&cfg, 1, &live, None)
    }

    fn head(method: &str, target: &str, host: Option<&str>) -> RequestHeader {
        let mut h = RequestHeader::build(method, target.as_bytes(), None).expect("head");
        if let Some(host) = host {
            h.insert_header(HOST, host).expect("host");
        }
        h
    }

    fn peer() -> Arrival {
        Arrival {
            peer: Some(IpAddr::from([192, 0, 2, 7])),
            client_cert: false,
        }
    }

    #[test]
    fn routes_by_normalized_host_and_keeps_what_the_path_needs() {
        let snap = snapshot();
        let https = snap.listener("https");
        let Decision::Route(routed) =
            decide(https, false, peer(), &head("GET", "/x", Some("A.test:443")))
        else {
            panic!("not routed");
        };
        assert_eq!(&*routed.target.name, "a");
        assert_eq!(
            routed.forwarded_host,
            Some(HeaderValue::from_static("a.test"))
        );
        assert_eq!(routed.hsts, Some(HeaderValue::from_static("max-age=60")));
        assert_eq!(routed.client.ip, peer().peer);
        let Decision::Route(same) = decide(https, false, peer(), &head("GET", "/", Some("a.test")))
        else {
            panic!("not routed");
        };
        assert_eq!(
            same.forwarded_host,
            Some(HeaderValue::from_static("a.test"))
        );
    }

    #[test]
    fn a_route_whose_match_fails_gives_way_to_the_next() {
        use crate::config::model::{Condition, RouteMatch};
        let mut posts = route("a", None, "u");
        posts.name = "posts".into();
        posts.rules.matcher = Some(RouteMatch {
            methods: vec![http::Method::POST],
            headers: vec![(
                http::HeaderName::from_static("x-env"),
                Condition::Equals("prod".into()),
            )],
            ..RouteMatch::default()
        });
        let mut certified = route("a", None, "u");
        certified.name = "certified".into();
        certified.rules.matcher = Some(RouteMatch {
            client_cert: true,
            ..RouteMatch::default()
        });
        let cfg = config(
            vec![listener("https", 443, true, false)],
            vec![posts, certified, route("a", None, "u")],
        );
        let live = Live::new().expect("live state");
        let snap = Snapshot::compile(&cfg, 1, &live, None);
        let https = snap.listener("https");
        let name =
            |arrival: Arrival, head: &RequestHeader| match decide(https, false, arrival, head) {
                Decision::Route(routed) => routed.target.name.to_string(),
                other => panic!("{other:?}"),
            };
        let mut post = head("POST", "/x", Some("a.test"));
        post.insert_header("x-env", "prod").expect("header");
        assert_eq!(name(peer(), &post), "posts");
        // The same request without the header, then as a GET: the next route in file order.
        let bare = head("POST", "/x", Some("a.test"));
        assert_eq!(name(peer(), &bare), "a");
        let certified_peer = Arrival {
            client_cert: true,
            ..peer()
        };
        assert_eq!(name(certified_peer, &bare), "certified");
        assert_eq!(name(certified_peer, &post), "posts");
    }

    #[test]
    fn unroutable_requests_are_refused_or_redirected() {
        let snap = snapshot();
        let https = snap.listener("https");
        let http = snap.listener("http");
        assert!(matches!(
            decide(https, false, peer(), &head("GET", "/", Some("nope.test"))),
            Decision::Refuse(404)
        ));
        assert!(matches!(
            decide(https, false, peer(), &head("GET", "/", None)),
            Decision::Refuse(400)
        ));
        assert!(matches!(
            decide(https, false, peer(), &head("GET", "/", Some("a:b:c"))),
            Decision::Refuse(400)
        ));
        assert!(matches!(
            decide(None, false, peer(), &head("GET", "/", Some("a.test"))),
            Decision::Refuse(503)
        ));
        match decide(http, true, peer(), &head("GET", "/p?q=1", Some("a.test"))) {
            Decision::Redirect(location) => assert_eq!(location, "https://a.test/p?q=1"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            decide(http, true, peer(), &head("GET", "/", Some("plain.test"))),
            Decision::Route(_)
        ));
    }

    #[test]
    fn challenges_come_first_on_the_http_listener_only() {
        let snap = snapshot();
        let path = "/.well-known/acme-challenge/tok_en-1";
        let http = snap.listener("http");
        assert!(matches!(
            decide(http, true, peer(), &head("GET", path, Some("plain.test"))),
            Decision::Challenge
        ));
        assert!(!matches!(
            decide(
                snap.listener("https"),
                false,
                peer(),
                &head("GET", path, Some("a.test"))
            ),
            Decision::Challenge
        ));
        assert_eq!(challenge_token(path), Some("tok_en-1"));
        assert_eq!(challenge_token("/.well-known/acme-challenge/"), None);
        assert_eq!(challenge_token("/.well-known/acme-challenge/a.b"), None);
        assert_eq!(https_location("h", 8443, "/x"), "https://h:8443/x");
    }
}
