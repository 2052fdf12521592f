//! Edge security through the real daemon: a route's rate limit admits exactly `burst` requests of
//! a bounded burst (per client address or per header value) and refuses the rest with 429 and
//! Retry-After without reaching the backend; `allow`/`deny` lists answer 403; metrics count both;
//! X-Forwarded-For is believed only from `trusted_proxies`.

use crate::backends::EchoBackend;
use crate::client::{https_get, https_request, Request};
use crate::harness::{DaemonBuilder, DEFAULT_TIMEOUTS};
use crate::observability::{admin_get, sample};

/// Requests sent in each burst: well above every burst size below.
const BURST_SENT: usize = 12;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_admits_exactly_the_burst() {
    let backend = EchoBackend::start("a").await;
    // One token a minute: nothing refills during the test, so the counts are exact.
    let d = DaemonBuilder::new()
        .admin()
        .route("{ name: limited, hosts: [limited.test], upstream: a, rate_limit: { key: client_ip, rate: 1/m, burst: 5 } }")
        .route("{ name: free, hosts: [free.test], upstream: a }")
        .upstream("a", &[backend.addr], DEFAULT_TIMEOUTS)
        .start()
        .await;

    let mut statuses = Vec::new();
    for _ in 0..BURST_SENT {
        let r = https_get(d.https, "limited.test", "/").await;
        if r.status == 429 {
            assert_eq!(r.text(), "Too Many Requests\n");
            let wait: u64 = r
                .header("retry-after")
                .expect("Retry-After")
                .parse()
                .unwrap();
            assert!((1..=60).contains(&wait), "Retry-After {wait}");
        }
        statuses.push(r.status);
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        5,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 429).count(),
        BURST_SENT - 5
    );
    assert!(
        statuses[..5].iter().all(|s| *s == 200),
        "the first five pass: {statuses:?}"
    );
    assert_eq!(
        backend.count(),
        5,
        "refused requests never reach the backend"
    );

    // Another route is not limited.
    for _ in 0..BURST_SENT {
        assert_eq!(https_get(d.https, "free.test", "/").await.status, 200);
    }
    assert_eq!(backend.count(), 5 + BURST_SENT);

    let m = admin_get(&d, "/metrics").await;
    let refused = sample(
        &m,
        "ferrogate_security_rejections_total",
        &[("route", "limited"), ("reason", "rate_limit")],
    );
    assert_eq!(refused, Some((BURST_SENT - 5) as f64));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_keyed_rate_limit_counts_each_value() {
    let backend = EchoBackend::start("a").await;
    let d = DaemonBuilder::new()
        .route("{ name: api, hosts: [api.test], upstream: a, rate_limit: { key: \"header:X-User\", rate: 1/h, burst: 3 } }")
        .upstream("a", &[backend.addr], DEFAULT_TIMEOUTS)
        .start()
        .await;
    let mut passed = std::collections::HashMap::new();
    for user in ["alice", "bob", "alice", "bob"]
        .iter()
        .cycle()
        .take(BURST_SENT)
    {
        let r = https_request(
            d.https,
            &Request::get("api.test", "/").header("X-User", user),
        )
        .await;
        if r.status == 200 {
            *passed.entry(*user).or_insert(0) += 1;
        } else {
            assert_eq!(r.status, 429);
        }
    }
    assert_eq!(passed.get("alice"), Some(&3));
    assert_eq!(passed.get("bob"), Some(&3));
    assert_eq!(backend.count(), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_and_deny_lists_answer_403() {
    let backend = EchoBackend::start("a").await;
    let d = DaemonBuilder::new()
        .admin()
        .route("{ name: inside, hosts: [inside.test], upstream: a, allow: [127.0.0.0/8] }")
        .route("{ name: outside, hosts: [outside.test], upstream: a, allow: [10.0.0.0/8] }")
        .route("{ name: denied, hosts: [denied.test], upstream: a, deny: [127.0.0.1] }")
        .route("{ name: both, hosts: [both.test], upstream: a, allow: [127.0.0.0/8], deny: [127.0.0.1/32] }")
        .upstream("a", &[backend.addr], DEFAULT_TIMEOUTS)
        .start()
        .await;
    assert_eq!(https_get(d.https, "inside.test", "/").await.status, 200);
    for host in ["outside.test", "denied.test", "both.test"] {
        let r = https_get(d.https, host, "/").await;
        assert_eq!(r.status, 403, "{host}: {}", r.text());
        assert_eq!(r.text(), "Forbidden\n");
    }
    assert_eq!(backend.count(), 1);
    let m = admin_get(&d, "/metrics").await;
    let refused = sample(
        &m,
        "ferrogate_security_rejections_total",
        &[("route", "denied"), ("reason", "access")],
    );
    assert_eq!(refused, Some(1.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_for_is_believed_only_from_trusted_proxies() {
    let backend = EchoBackend::start("a").await;
    let d = DaemonBuilder::new()
        .yaml("trusted_proxies: [127.0.0.1]")
        .route("{ name: api, hosts: [api.test], upstream: a, rate_limit: { rate: 1/h, burst: 1 }, deny: [198.51.100.0/24] }")
        .upstream("a", &[backend.addr], DEFAULT_TIMEOUTS)
        .start()
        .await;
    let from = |chain: &str| Request::get("api.test", "/").header("X-Forwarded-For", chain);
    // The peer (127.0.0.1) is trusted: the chain is kept and appended to, and the client is the
    // rightmost untrusted entry (a forged leftmost one changes nothing).
    let r = https_request(d.https, &from("6.6.6.6, 203.0.113.7")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = backend.last();
    assert_eq!(
        seen.header_all("x-forwarded-for").join(", "),
        "6.6.6.6, 203.0.113.7, 127.0.0.1"
    );
    assert_eq!(seen.header("x-real-ip"), Some("203.0.113.7"));
    // Rate limits and access lists use that client.
    assert_eq!(
        https_request(d.https, &from("7.7.7.7, 203.0.113.7"))
            .await
            .status,
        429
    );
    assert_eq!(
        https_request(d.https, &from("203.0.113.8")).await.status,
        200
    );
    assert_eq!(
        https_request(d.https, &from("198.51.100.4")).await.status,
        403
    );
    assert_eq!(backend.count(), 2);
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_keys_are_checked_limited_per_key_and_replaced_upstream() {
    let backend = EchoBackend::start("gpu").await;
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys.sha256");
    let file = format!(
        "# alice\n{}\n{}\n",
        hex(&ferrogate::security::sha256(b"sk-alice")),
        hex(&ferrogate::security::sha256(b"sk-bob"))
    );
    std::fs::write(&keys, file).unwrap();
    let upstream_key = dir.path().join("upstream.key");
    std::fs::write(&upstream_key, "sk-gpu-internal\n").unwrap();
    let d = DaemonBuilder::new()
        .route(&format!(
            "{{ name: api, hosts: [api.test], upstream: gpu, api_keys: {{ file: {}, upstream_key_file: {} }}, rate_limit: {{ key: api_key, rate: 1/h, burst: 2 }} }}",
            keys.display(),
            upstream_key.display()
        ))
        .upstream("gpu", &[backend.addr], DEFAULT_TIMEOUTS)
        .start()
        .await;
    let bearer = |key: &str| {
        Request::post("api.test", "/v1/chat/completions")
            .header("Authorization", &format!("Bearer {key}"))
    };

    // No key, a wrong key: 401 in OpenAI's format, nothing forwarded.
    for req in [
        Request::post("api.test", "/v1/chat/completions"),
        bearer("sk-eve"),
    ] {
        let r = https_request(d.https, &req).await;
        assert_eq!(r.status, 401);
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_eq!(r.header("www-authenticate"), Some("Bearer"));
        let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(body["error"]["code"], "invalid_api_key");
    }
    assert_eq!(backend.count(), 0);

    // A good key passes; the backend sees our key, never the client's.
    assert_eq!(
        https_request(d.https, &bearer("sk-alice")).await.status,
        200
    );
    let seen = backend.last();
    assert_eq!(seen.header_all("authorization"), ["Bearer sk-gpu-internal"]);

    // Per-key limit: burst 2 for alice, then 429 (OpenAI JSON); bob has his own bucket.
    assert_eq!(
        https_request(d.https, &bearer("sk-alice")).await.status,
        200
    );
    let r = https_request(d.https, &bearer("sk-alice")).await;
    assert_eq!(r.status, 429);
    assert!(r.header("retry-after").is_some());
    let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(body["error"]["code"], "rate_limit_exceeded");
    assert_eq!(https_request(d.https, &bearer("sk-bob")).await.status, 200);
    assert_eq!(backend.count(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_preflight_is_answered_at_the_edge() {
    let backend = EchoBackend::start("a").await;
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    std::fs::write(&keys, hex(&ferrogate::security::sha256(b"sk-a"))).unwrap();
    let d = DaemonBuilder::new()
        .route(&format!("{{ name: api, hosts: [api.test], upstream: a, api_keys: {{ file: {} }}, cors: {{ origins: ['https://app.example'], methods: [GET, POST], headers: [Content-Type, Authorization], credentials: true, max_age: 1h }} }}", keys.display()))
        .upstream("a", &[backend.addr], DEFAULT_TIMEOUTS)
        .start()
        .await;
    let mut preflight = Request::get("api.test", "/v1/models")
        .header("Origin", "https://app.example")
        .header("Access-Control-Request-Method", "POST")
        .header(
            "Access-Control-Request-Headers",
            "authorization, content-type",
        );
    preflight.method = "OPTIONS".into();
    // Answered without an API key and without reaching the backend.
    let r = https_request(d.https, &preflight).await;
    assert_eq!(r.status, 204);
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://app.example")
    );
    assert_eq!(r.header("access-control-allow-credentials"), Some("true"));
    assert_eq!(r.header("access-control-allow-methods"), Some("GET, POST"));
    assert_eq!(r.header("access-control-max-age"), Some("3600"));
    // Another origin: answered, but without permission.
    let mut evil = preflight.clone();
    evil.headers[0].1 = "https://evil.example".into();
    let r = https_request(d.https, &evil).await;
    assert_eq!(r.status, 204);
    assert_eq!(r.header("access-control-allow-origin"), None);
    assert_eq!(backend.count(), 0);

    // The actual request carries the CORS headers on the backend's response.
    let r = https_request(
        d.https,
        &Request::get("api.test", "/v1/models")
            .header("Origin", "https://app.example")
            .header("Authorization", "Bearer sk-a"),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://app.example")
    );
    assert_eq!(backend.count(), 1);
}
