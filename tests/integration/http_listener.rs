//! The plain listeners: the port-80 role (308 to https, ACME challenge path answered 404 without
//! a redirect) and an extra plain listener serving only the routes bound to it.

use crate::backends::EchoBackend;
use crate::client::{http_get, https_get};
use crate::harness::{DaemonBuilder, DEFAULT_TIMEOUTS};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_redirects_to_https_with_308() {
    let a = EchoBackend::start("a").await;
    let d = DaemonBuilder::new()
        .route("{ name: chat, hosts: [chat.test], upstream: a }")
        .upstream("a", &[a.addr], DEFAULT_TIMEOUTS)
        .start()
        .await;
    let port = d.https.port();

    let r = http_get(d.http, "chat.test", "/some/path?q=1&r=2").await;
    assert_eq!(r.status, 308, "{}", r.text());
    assert_eq!(
        r.header("location"),
        Some(format!("https://chat.test:{port}/some/path?q=1&r=2").as_str())
    );
    // A port in Host (browsers send it for a non-default port) is replaced by the https one.
    let r = http_get(d.http, &format!("chat.test:{}", d.http.port()), "/x").await;
    assert_eq!(r.status, 308);
    assert_eq!(
        r.header("location"),
        Some(format!("https://chat.test:{port}/x").as_str())
    );
    // Hosts without a route are redirected too (the https side decides).
    let r = http_get(d.http, "elsewhere.test", "/").await;
    assert_eq!(r.status, 308);
    assert_eq!(
        r.header("location"),
        Some(format!("https://elsewhere.test:{port}/").as_str())
    );
    assert_eq!(a.count(), 0, "a redirect must not reach the backend");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acme_challenge_path_is_answered_not_redirected() {
    let a = EchoBackend::start("a").await;
    let d = DaemonBuilder::new()
        .route("{ name: chat, hosts: [chat.test], upstream: a }")
        .upstream("a", &[a.addr], DEFAULT_TIMEOUTS)
        .start()
        .await;

    let r = http_get(
        d.http,
        "chat.test",
        "/.well-known/acme-challenge/unknown-token",
    )
    .await;
    assert_eq!(r.status, 404, "{}", r.text());
    assert_eq!(r.header("location"), None);
    assert_eq!(a.count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extra_plain_listener_serves_only_its_routes() {
    let public = EchoBackend::start("public").await;
    let internal = EchoBackend::start("internal").await;
    let d = DaemonBuilder::new()
        .extra_listener("internal", false)
        .route("{ name: chat, hosts: [chat.test], upstream: public }")
        .route("{ name: internal, listener: internal, upstream: internal }")
        .upstream("public", &[public.addr], DEFAULT_TIMEOUTS)
        .upstream("internal", &[internal.addr], DEFAULT_TIMEOUTS)
        .start()
        .await;
    let extra = d.extra("internal");

    let r = http_get(extra, "anything.test", "/v1/models").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-backend"), Some("internal"));
    let seen = internal.last();
    assert_eq!(seen.target, "/v1/models");
    assert_eq!(seen.header("x-forwarded-proto"), Some("http"));
    assert_eq!(seen.header("x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(seen.header("host"), Some("anything.test"));

    // An https route is not served on the extra listener, even for its own host...
    let r = http_get(extra, "chat.test", "/").await;
    assert_eq!(r.header("x-backend"), Some("internal"));
    assert_eq!(public.count(), 0);
    // ...and the host-less internal route does not leak onto the https listener.
    let r = https_get(d.https, "anything.test", "/").await;
    assert_eq!(r.status, 404, "{}", r.text());
    let r = https_get(d.https, "chat.test", "/").await;
    assert_eq!(r.header("x-backend"), Some("public"));
    assert_eq!(internal.count(), 2);
}
