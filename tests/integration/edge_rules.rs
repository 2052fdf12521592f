//! Request rules through the real daemon: routes chosen by `match` (method, header, query,
//! client range), `deny_user_agents` and `countries` refusing with 403 before any backend sees
//! the request (the country database followed when its file changes), `redirect` and `respond`
//! answered at the edge, `rewrite`, and request and response header rules.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::backends::EchoBackend;
use crate::client::{http_request, Request, Response};
use crate::harness::{Daemon, DaemonBuilder};

/// Longest wait for the country database watcher to notice a new file.
const DATABASE_LIMIT: Duration = Duration::from_secs(30);

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/geoip")
        .join(name)
}

async fn send(d: &Daemon, req: Request) -> Response {
    http_request(d.extra("edge"), &req).await
}

fn get(host: &str, target: &str) -> Request {
    Request::get(host, target)
}

/// A daemon with an `edge` listener whose clients are named by X-Forwarded-For (the test is the
/// trusted proxy), `routes` on it, and upstreams `a` and `b`.
async fn edge(routes: &[&str], a: &EchoBackend, b: &EchoBackend, extra: &str) -> Daemon {
    let mut builder = DaemonBuilder::new()
        .admin()
        .extra_listener("edge", false)
        .upstream("a", &[a.addr], "{ connect: 2s, read: 5s }")
        .upstream("b", &[b.addr], "{ connect: 2s, read: 5s }")
        .yaml("trusted_proxies: [127.0.0.0/8]");
    for route in routes {
        builder = builder.route(&route.replace("{L}", "listener: edge"));
    }
    if !extra.is_empty() {
        builder = builder.yaml(extra);
    }
    builder.start().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_sharing_host_and_prefix_are_chosen_by_match() {
    let a = EchoBackend::start("a").await;
    let b = EchoBackend::start("b").await;
    let d = edge(
        &[
            "{ name: admin, hosts: [api.test], path_prefix: /admin/, {L}, upstream: a, match: { methods: [POST], headers: { x-env: { equals: prod }, x-debug: absent }, query: { v: { regex: '^[0-9]+$' } } } }",
            "{ name: office, hosts: [api.test], path_prefix: /admin/, {L}, respond: { status: 200, body: office }, match: { client: [192.0.2.0/24], headers: { user-agent: { prefix: 'curl/' } } } }",
            "{ name: api, hosts: [api.test], {L}, upstream: b }",
        ],
        &a,
        &b,
        "",
    )
    .await;
    let admin = || {
        Request::post("api.test", "/admin/x?v=42")
            .header("X-Env", "prod")
            .header("X-Forwarded-For", "198.51.100.1")
    };
    let r = send(&d, admin()).await;
    assert_eq!(r.header("x-backend"), Some("a"), "{}", r.text());
    // Each condition failing in turn: the next route that fits (office, then api).
    for (what, req) in [
        ("GET", {
            let mut r = admin();
            r.method = "GET".into();
            r
        }),
        (
            "other x-env",
            Request::post("api.test", "/admin/x?v=42")
                .header("X-Env", "dev")
                .header("X-Forwarded-For", "198.51.100.1"),
        ),
        ("x-debug present", admin().header("X-Debug", "1")),
        ("query not a number", {
            let mut r = admin();
            r.target = "/admin/x?v=abc".into();
            r
        }),
    ] {
        let r = send(&d, req).await;
        assert_eq!(r.header("x-backend"), Some("b"), "{what}: {}", r.text());
        assert!(r.text().contains("target: /admin/"), "{what}");
    }
    // The client range and a header prefix: only from 192.0.2.0/24 with curl.
    let office = |ip: &str, agent: &str| {
        get("api.test", "/admin/y")
            .header("X-Forwarded-For", ip)
            .header("User-Agent", agent)
    };
    let before = a.count();
    let r = send(&d, office("192.0.2.9", "curl/8.0")).await;
    assert_eq!(r.text(), "office");
    let r = send(&d, office("192.0.2.9", "Mozilla/5.0")).await;
    assert_eq!(r.header("x-backend"), Some("b"));
    let r = send(&d, office("203.0.113.9", "curl/8.0")).await;
    assert_eq!(r.header("x-backend"), Some("b"));
    assert_eq!(b.last().target, "/admin/y");
    assert_eq!(a.count(), before, "no admin request reached a");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_agents_and_countries_are_refused_before_any_backend() {
    let a = EchoBackend::start("a").await;
    let b = EchoBackend::start("b").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let database = dir.path().join("countries.mmdb");
    std::fs::copy(fixture("countries.mmdb"), &database).expect("copy database");
    let d = edge(
        &[
            "{ name: web, hosts: [web.test], {L}, upstream: a, deny_user_agents: ['(?i)python-requests', '^curl/'], countries: { deny: [RU] } }",
            "{ name: eu, hosts: [eu.test], {L}, upstream: b, countries: { allow: [DE, NL] } }",
        ],
        &a,
        &b,
        &format!("geoip: {{ database: {} }}", database.display()),
    )
    .await;
    let from = |host: &str, ip: &str| get(host, "/").header("X-Forwarded-For", ip);
    let status = |r: &Response| r.status;

    let r = send(
        &d,
        from("web.test", "192.0.2.1").header("User-Agent", "Python-Requests/2.31"),
    )
    .await;
    assert_eq!(status(&r), 403, "{}", r.text());
    let r = send(
        &d,
        from("web.test", "192.0.2.1").header("User-Agent", "curl/8.5"),
    )
    .await;
    assert_eq!(status(&r), 403);
    let r = send(
        &d,
        from("web.test", "192.0.2.1").header("User-Agent", "Mozilla/5.0 curl/8"),
    )
    .await;
    assert_eq!(status(&r), 200, "a regex anchored at the start");
    // 198.51.100.0/24 is RU in the test database; an unknown address passes a deny list.
    let r = send(&d, from("web.test", "198.51.100.7")).await;
    assert_eq!(status(&r), 403);
    let r = send(&d, from("web.test", "10.1.1.1")).await;
    assert_eq!(status(&r), 200);
    assert_eq!(a.count(), 2, "refused requests never reached the backend");
    let admin = d.admin.expect("admin listener");
    let metrics = http_request(admin, &get("admin", "/metrics")).await.text();
    for (reason, count) in [("user_agent", 2), ("country", 1)] {
        let line = format!(
            "ferrogate_security_rejections_total{{reason=\"{reason}\",route=\"web\"}} {count}"
        );
        assert!(metrics.contains(&line), "{line} in\n{metrics}");
    }

    // An allow list: DE (192.0.2.0/24) and NL (the registered country of 203.0.113.0/24) pass;
    // RU and an address the database does not know are refused.
    for (ip, expected) in [
        ("192.0.2.5", 200),
        ("203.0.113.5", 200),
        ("198.51.100.5", 403),
        ("10.0.0.1", 403),
    ] {
        let r = send(&d, from("eu.test", ip)).await;
        assert_eq!(status(&r), expected, "{ip}: {}", r.text());
    }

    // The database file is replaced (192.0.2.0/24 moves to FR): the daemon follows it without
    // a reload.
    let next = dir.path().join("countries.mmdb.new");
    std::fs::copy(fixture("countries-v2.mmdb"), &next).expect("copy database");
    std::fs::rename(&next, &database).expect("replace database");
    let deadline = Instant::now() + DATABASE_LIMIT;
    loop {
        let r = send(&d, from("eu.test", "192.0.2.5")).await;
        if r.status == 403 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the new database was not used; log:\n{}",
            d.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(d.log().contains("country database reloaded"), "{}", d.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirect_and_respond_routes_answer_at_the_edge() {
    let a = EchoBackend::start("a").await;
    let b = EchoBackend::start("b").await;
    let d = edge(
        &[
            "{ name: moved, hosts: [old.test], {L}, redirect: { to: 'https://new.test{path}', status: 301 } }",
            "{ name: back, hosts: [back.test], {L}, redirect: { to: '{scheme}://{host}:8443/x?from={client_ip}' } }",
            "{ name: ok, hosts: [ok.test], path_prefix: /healthz, {L}, respond: { status: 200, body: \"ok\\n\", content_type: text/plain }, headers: { response: { set: { X-Served-By: edge }, remove: [Cache-Control] } } }",
            "{ name: gone, hosts: [ok.test], path_prefix: /old, {L}, respond: { status: 410 } }",
        ],
        &a,
        &b,
        "",
    )
    .await;
    let r = send(&d, get("old.test", "/a/b?c=1")).await;
    assert_eq!(r.status, 301);
    assert_eq!(r.header("location"), Some("https://new.test/a/b?c=1"));
    let r = send(
        &d,
        get("back.test", "/").header("X-Forwarded-For", "192.0.2.44"),
    )
    .await;
    assert_eq!(r.status, 302, "the default status");
    assert_eq!(
        r.header("location"),
        Some("http://back.test:8443/x?from=192.0.2.44")
    );
    let r = send(&d, get("ok.test", "/healthz")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "ok\n");
    assert_eq!(r.header("content-type"), Some("text/plain"));
    assert_eq!(r.header("x-served-by"), Some("edge"));
    assert_eq!(
        r.header("cache-control"),
        None,
        "removed by the route's rule"
    );
    let r = send(&d, get("ok.test", "/old/page")).await;
    assert_eq!(r.status, 410);
    assert!(r.text().is_empty(), "{}", r.text());
    assert_eq!(a.count() + b.count(), 0, "no backend was asked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewrites_and_header_rules_shape_both_heads() {
    let a = EchoBackend::start("a").await;
    let b = EchoBackend::start("b").await;
    let d = edge(
        &[
            "{ name: v2, hosts: [api.test], path_prefix: /v1/, {L}, upstream: a, rewrite: { prefix: /v2/ }, headers: { request: { set: { X-Env: prod, X-Forwarded-Proto: https }, add: { X-Trace: 'id={request_id};host={host}' }, remove: [X-Internal] }, response: { set: { Cache-Control: no-store }, add: { X-Edge: '{client_ip}' }, remove: [X-Backend] } } }",
            "{ name: legacy, hosts: [api.test], path_prefix: /old/, {L}, upstream: b, rewrite: { regex: '^/old/(\\w+)/(.*)$', to: '/new/$2/$1' } }",
        ],
        &a,
        &b,
        "",
    )
    .await;
    let r = send(
        &d,
        get("api.test", "/v1/chat?stream=1")
            .header("X-Internal", "secret")
            .header("X-Env", "dev")
            .header("X-Trace", "client")
            .header("X-Forwarded-For", "192.0.2.3"),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = a.last();
    assert_eq!(seen.target, "/v2/chat?stream=1");
    assert_eq!(seen.header("x-internal"), None);
    assert_eq!(seen.header_all("x-env"), ["prod"]);
    assert_eq!(
        seen.header_all("x-forwarded-proto"),
        ["https"],
        "a rule overrides ours"
    );
    let id = r.header("x-request-id").expect("request id").to_string();
    assert_eq!(
        seen.header_all("x-trace"),
        ["client".to_string(), format!("id={id};host=api.test")]
    );
    assert_eq!(r.header("cache-control"), Some("no-store"));
    assert_eq!(r.header("x-edge"), Some("192.0.2.3"));
    assert_eq!(r.header("x-backend"), None, "removed from the response");

    let r = send(&d, get("api.test", "/old/users/42/profile?full=1")).await;
    assert_eq!(r.header("x-backend"), Some("b"));
    assert_eq!(b.last().target, "/new/42/profile/users?full=1");
}
