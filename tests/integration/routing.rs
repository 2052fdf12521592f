//! Routing through the https listener: exact and wildcard hosts, path prefixes with and without
//! stripping, longest prefix, unknown hosts, the forwarding headers a backend sees, round robin.

use crate::backends::EchoBackend;
use crate::client::{https_get, https_request, Request};
use crate::harness::{Daemon, DaemonBuilder, DEFAULT_TIMEOUTS};

/// A daemon routing `chat.test` to `backend`.
async fn chat_daemon(backend: &EchoBackend) -> Daemon {
    DaemonBuilder::new()
        .route("{ name: chat, hosts: [chat.test], upstream: a }")
        .upstream("a", &[backend.addr], DEFAULT_TIMEOUTS)
        .start()
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exact_host_selects_its_upstream() {
    let a = EchoBackend::start("a").await;
    let b = EchoBackend::start("b").await;
    let d = DaemonBuilder::new()
        .route("{ name: chat, hosts: [chat.test], upstream: a }")
        .route("{ name: other, hosts: [other.test, Other2.Test], upstream: b }")
        .upstream("a", &[a.addr], DEFAULT_TIMEOUTS)
        .upstream("b", &[b.addr], DEFAULT_TIMEOUTS)
        .start()
        .await;

    let r = https_get(d.https, "chat.test", "/hello").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-backend"), Some("a"));
    assert_eq!(a.last().target, "/hello");

    let r = https_get(d.https, "other.test", "/").await;
    assert_eq!(r.header("x-backend"), Some("b"));
    // Host names are case-insensitive; a port in Host does not change the route.
    let r = https_get(d.https, "OTHER2.test", "/").await;
    assert_eq!(r.header("x-backend"), Some("b"));
    let host_with_port = format!("chat.test:{}", d.https.port());
    let r = https_get(d.https, &host_with_port, "/p").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-backend"), Some("a"));
    // The backend sees the Host the client sent.
    assert_eq!(a.last().header("host"), Some(host_with_port.as_str()));
    assert_eq!(a.count(), 2);
    assert_eq!(b.count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wildcard_host_matches_one_label_and_exact_wins() {
    let exact = EchoBackend::start("exact").await;
    let wild = EchoBackend::start("wild").await;
    let d = DaemonBuilder::new()
        .route("{ name: wild, hosts: [\"*.wild.test\"], upstream: wild }")
        .route("{ name: exact, hosts: [special.wild.test], upstream: exact }")
        .upstream("wild", &[wild.addr], DEFAULT_TIMEOUTS)
        .upstream("exact", &[exact.addr], DEFAULT_TIMEOUTS)
        .start()
        .await;

    let r = https_get(d.https, "a.wild.test", "/").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-backend"), Some("wild"));
    let r = https_get(d.https, "special.wild.test", "/").await;
    assert_eq!(r.header("x-backend"), Some("exact"));
    // The bare domain is not covered by its wildcard.
    let r = https_get(d.https, "wild.test", "/").await;
    assert_eq!(r.status, 404, "{}", r.text());
    assert_eq!(wild.count(), 1);
    assert_eq!(exact.count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_prefix_with_and_without_strip() {
    let keep = EchoBackend::start("keep").await;
    let strip = EchoBackend::start("strip").await;
    let d = DaemonBuilder::new()
        .route("{ name: api, hosts: [paths.test], path_prefix: /api/, upstream: keep }")
        .route(
            "{ name: owui, hosts: [paths.test], path_prefix: /owui/, strip_prefix: true, upstream: strip }",
        )
        .upstream("keep", &[keep.addr], DEFAULT_TIMEOUTS)
        .upstream("strip", &[strip.addr], DEFAULT_TIMEOUTS)
        .start()
        .await;

    let r = https_get(d.https, "paths.test", "/api/models?x=1&y=2").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-backend"), Some("keep"));
    assert_eq!(keep.last().target, "/api/models?x=1&y=2");

    let r = https_get(d.https, "paths.test", "/owui/c/123?q=a%20b").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-backend"), Some("strip"));
    assert_eq!(strip.last().target, "/c/123?q=a%20b");

    // Stripping the whole path still leaves a leading `/`.
    let r = https_get(d.https, "paths.test", "/owui/").await;
    assert_eq!(r.header("x-backend"), Some("strip"));
    assert_eq!(strip.last().target, "/");
    let r = https_get(d.https, "paths.test", "/owui/?tab=1").await;
    assert_eq!(r.header("x-backend"), Some("strip"));
    assert_eq!(strip.last().target, "/?tab=1");

    // A path outside every prefix of a known host is not routed.
    let r = https_get(d.https, "paths.test", "/elsewhere").await;
    assert_eq!(r.status, 404, "{}", r.text());
    assert_eq!(keep.count(), 1);
    assert_eq!(strip.count(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn longest_prefix_wins_on_segment_boundaries() {
    let root = EchoBackend::start("root").await;
    let v1 = EchoBackend::start("v1").await;
    let v1_models = EchoBackend::start("v1-models").await;
    let d = DaemonBuilder::new()
        // Listed shortest last on purpose: file order must not matter.
        .route("{ name: models, hosts: [llm.test], path_prefix: /v1/models, upstream: v1m }")
        .route("{ name: root, hosts: [llm.test], upstream: root }")
        .route("{ name: v1, hosts: [llm.test], path_prefix: /v1, upstream: v1 }")
        .upstream("root", &[root.addr], DEFAULT_TIMEOUTS)
        .upstream("v1", &[v1.addr], DEFAULT_TIMEOUTS)
        .upstream("v1m", &[v1_models.addr], DEFAULT_TIMEOUTS)
        .start()
        .await;

    let cases = [
        ("/v1/models", "v1-models"),
        ("/v1/models/llama", "v1-models"),
        ("/v1/modelsx", "v1"),
        ("/v1/chat/completions", "v1"),
        ("/v1", "v1"),
        ("/v1x", "root"),
        ("/v2/x", "root"),
        ("/", "root"),
    ];
    for (path, expected) in cases {
        let r = https_get(d.https, "llm.test", path).await;
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        assert_eq!(r.header("x-backend"), Some(expected), "path {path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_host_gets_a_short_404() {
    let a = EchoBackend::start("a").await;
    let d = chat_daemon(&a).await;

    let r = https_get(d.https, "nobody.test", "/").await;
    assert_eq!(r.status, 404);
    let body = r.text();
    assert!(!body.is_empty() && body.len() < 200, "body: {body:?}");
    assert!(!body.contains("127.0.0.1"), "body: {body:?}");
    assert!(!body.contains(&a.addr.port().to_string()), "body: {body:?}");
    assert_eq!(a.count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_sees_forwarding_headers() {
    let a = EchoBackend::start("a").await;
    let d = chat_daemon(&a).await;

    let r = https_get(d.https, "chat.test", "/first").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = a.last();
    assert_eq!(seen.header("host"), Some("chat.test"));
    assert_eq!(seen.header("x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(seen.header("x-forwarded-proto"), Some("https"));
    assert_eq!(seen.header("x-forwarded-host"), Some("chat.test"));
    assert_eq!(seen.header("x-real-ip"), Some("127.0.0.1"));
    assert_eq!(seen.header("x-client-ip"), Some("127.0.0.1"));

    // The client is not a trusted proxy (no `trusted_proxies`): its chain is replaced, and forged
    // client-IP headers are overwritten. (security.rs covers a trusted peer's chain.)
    let req = Request::get("chat.test", "/second")
        .header("X-Forwarded-For", "203.0.113.7")
        .header("X-Real-IP", "198.51.100.1")
        .header("X-Forwarded-Proto", "http");
    let r = https_request(d.https, &req).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = a.last();
    let chain = seen.header_all("x-forwarded-for").join(", ");
    assert_eq!(chain, "127.0.0.1");
    assert_eq!(seen.header("x-real-ip"), Some("127.0.0.1"));
    assert_eq!(seen.header("x-forwarded-proto"), Some("https"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_pass_through_as_the_backend_encoded_them() {
    let a = EchoBackend::start("a").await;
    let d = chat_daemon(&a).await;

    // The client's Accept-Encoding is the backend's to act on; the proxy neither strips it nor
    // compresses the plain answer itself.
    let req = Request::get("chat.test", "/plain").header("Accept-Encoding", "gzip, br, zstd");
    let r = https_request(d.https, &req).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(a.last().header("accept-encoding"), Some("gzip, br, zstd"));
    assert_eq!(r.header("content-encoding"), None);
    assert!(r.text().starts_with("backend: a\n"), "{}", r.text());
    assert_eq!(
        r.header("content-length").map(str::to_string),
        Some(r.body.len().to_string())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_alternates_between_two_servers() {
    let a = EchoBackend::start("a").await;
    let b = EchoBackend::start("b").await;
    let d = DaemonBuilder::new()
        .route("{ name: pool, hosts: [pool.test], upstream: pool }")
        .upstream("pool", &[a.addr, b.addr], DEFAULT_TIMEOUTS)
        .start()
        .await;

    let mut order = Vec::new();
    for i in 0..10 {
        let r = https_get(d.https, "pool.test", &format!("/req/{i}")).await;
        assert_eq!(r.status, 200, "{}", r.text());
        order.push(r.header("x-backend").expect("x-backend").to_string());
    }
    for pair in order.windows(2) {
        assert_ne!(pair[0], pair[1], "not alternating: {order:?}");
    }
    assert_eq!(a.count(), 5);
    assert_eq!(b.count(), 5);
}
