//! Basic auth per route (bcrypt users file, 401 with a Basic challenge, credentials kept from the
//! backend unless forwarded), the security headers a route may add, and CORS headers on the
//! edge's own 401/403/429 answers so a browser page can read them.

use base64::Engine;

use crate::backends::EchoBackend;
use crate::client::{https_request, Request, Response};
use crate::harness::{DaemonBuilder, DEFAULT_TIMEOUTS};

const ORIGIN: &str = "https://app.test";

fn basic(user_password: &str) -> String {
    let encoded = base64::engine::general_purpose::STANDARD.encode(user_password);
    format!("Basic {encoded}")
}

fn allowed_origin(r: &Response) -> Option<&str> {
    r.header("access-control-allow-origin")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_guards_a_route_and_refusals_carry_cors() {
    let backend = EchoBackend::start("a").await;
    let dir = tempfile::tempdir().unwrap();
    let users = dir.path().join("users.htpasswd");
    let hash = bcrypt::hash("s3cret", 4).unwrap();
    std::fs::write(&users, format!("# ops\nalice:{hash}\n")).unwrap();
    let users = users.display();
    let cors = format!("cors: {{ origins: ['{ORIGIN}'] }}");
    let d = DaemonBuilder::new()
        .route(&format!("{{ name: internal, hosts: [internal.test], upstream: a, basic_auth: {{ realm: 'ops pages', users_file: {users}, forward_authorization: false }}, security_headers: true, {cors} }}"))
        .route(&format!("{{ name: pass, hosts: [pass.test], upstream: a, basic_auth: {{ users_file: {users} }} }}"))
        .route(&format!("{{ name: limited, hosts: [limited.test], upstream: a, rate_limit: {{ rate: 1/h, burst: 1 }}, deny: [203.0.113.0/24], {cors} }}"))
        .upstream("a", &[backend.addr], DEFAULT_TIMEOUTS)
        .yaml("trusted_proxies: [127.0.0.0/8]")
        .start()
        .await;
    let get = |host: &str| Request::get(host, "/").header("Origin", ORIGIN);

    // No credentials, a wrong password, an unknown user: 401 with the Basic challenge and the
    // CORS headers; nothing forwarded.
    for auth in [None, Some("alice:wrong"), Some("mallory:s3cret")] {
        let mut req = get("internal.test");
        if let Some(auth) = auth {
            req = req.header("Authorization", &basic(auth));
        }
        let r = https_request(d.https, &req).await;
        assert_eq!(r.status, 401, "{auth:?}");
        assert_eq!(
            r.header("www-authenticate"),
            Some("Basic realm=\"ops pages\"")
        );
        assert_eq!(allowed_origin(&r), Some(ORIGIN), "{auth:?}");
    }
    assert_eq!(backend.count(), 0);

    // The right password, twice (the second from memory): forwarded without the credentials,
    // with the security headers added.
    for _ in 0..2 {
        let req = get("internal.test").header("Authorization", &basic("alice:s3cret"));
        let r = https_request(d.https, &req).await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
        assert_eq!(r.header("x-frame-options"), Some("SAMEORIGIN"));
        assert_eq!(
            r.header("referrer-policy"),
            Some("strict-origin-when-cross-origin")
        );
        assert_eq!(allowed_origin(&r), Some(ORIGIN));
        assert_eq!(backend.last().header("authorization"), None);
    }
    assert_eq!(backend.count(), 2);

    // forward_authorization defaults to true; no security headers unless asked for.
    let req = Request::get("pass.test", "/").header("Authorization", &basic("alice:s3cret"));
    let r = https_request(d.https, &req).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-frame-options"), None);
    assert_eq!(
        backend.last().header("authorization"),
        Some(basic("alice:s3cret").as_str())
    );
    assert_eq!(backend.count(), 3);

    // 429 and 403 from the edge carry the CORS headers too.
    let r = https_request(d.https, &get("limited.test")).await;
    assert_eq!(r.status, 200);
    let r = https_request(d.https, &get("limited.test")).await;
    assert_eq!(r.status, 429);
    assert_eq!(allowed_origin(&r), Some(ORIGIN));
    let denied = get("limited.test").header("X-Forwarded-For", "203.0.113.5");
    let r = https_request(d.https, &denied).await;
    assert_eq!(r.status, 403);
    assert_eq!(allowed_origin(&r), Some(ORIGIN));
    assert_eq!(backend.count(), 4);
}
