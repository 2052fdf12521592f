//! /metrics after known traffic: exact request counts per route, server and status class,
//! unrouted requests, connection errors and retries, latency histogram counts, body bytes,
//! in-flight back to zero, and open connections and WebSockets while they are open.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use crate::backends::{closed_port, websocket_echo, EchoBackend};
use crate::client::{exchange, http_get, https_get, tls_connect, Request, TlsOptions};
use crate::harness::{Daemon, DaemonBuilder, DEFAULT_TIMEOUTS};

/// How long a gauge may take to settle after a connection closes.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(5);

/// `GET path` on the admin listener; panics unless it answers 200.
pub async fn admin_get(d: &Daemon, path: &str) -> String {
    let admin = d.admin.expect("the daemon was built with .admin()");
    let r = http_get(admin, "localhost", path).await;
    assert_eq!(r.status, 200, "GET {path}: {}", r.text());
    r.text()
}

/// The value of the sample `name{labels}` (labels in any order, all of them given).
pub fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines().find_map(|line| {
        if line.starts_with('#') {
            return None;
        }
        let (series, value) = line.rsplit_once(' ')?;
        let (series_name, label_text) = match series.split_once('{') {
            Some((n, rest)) => (n, rest.strip_suffix('}')?),
            None => (series, ""),
        };
        if series_name != name {
            return None;
        }
        let mut found: Vec<(String, String)> = label_text
            .split("\",")
            .filter(|p| !p.is_empty())
            .filter_map(|p| {
                let (k, v) = p.split_once('=')?;
                Some((k.to_string(), v.trim_matches('"').to_string()))
            })
            .collect();
        found.sort();
        let mut wanted: Vec<(String, String)> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        wanted.sort();
        (found == wanted).then(|| value.parse().ok())?
    })
}

/// Like [`sample`] but panics with the whole exposition when the series is missing.
pub fn value(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    sample(text, name, labels).unwrap_or_else(|| panic!("no sample {name}{labels:?} in\n{text}"))
}

/// The sum of every sample of `name`.
pub fn total(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

/// Scrapes until every sample of `name` adds up to `want`: a request is counted when its
/// logging phase ends, just after the client has its response.
pub async fn wait_for_total(d: &Daemon, name: &str, want: f64) -> String {
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    loop {
        let text = admin_get(d, "/metrics").await;
        if total(&text, name) == want {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "{name} never added up to {want}:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Scrapes until `name{labels}` equals `want` (gauges that settle after a close).
async fn wait_for(d: &Daemon, name: &str, labels: &[(&str, &str)], want: f64) {
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    loop {
        let text = admin_get(d, "/metrics").await;
        if sample(&text, name, labels) == Some(want) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{name}{labels:?} did not become {want}:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Labels of `ferrogate_requests_total`.
fn req<'a>(
    route: &'a str,
    upstream: &'a str,
    server: &'a str,
    class: &'a str,
) -> [(&'static str, &'a str); 4] {
    [
        ("route", route),
        ("upstream", upstream),
        ("server", server),
        ("class", class),
    ]
}

/// Labels of the per-server families.
fn pair<'a>(upstream: &'a str, server: &'a str) -> [(&'static str, &'a str); 2] {
    [("upstream", upstream), ("server", server)]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_known_traffic_exactly() {
    let a = EchoBackend::start("a").await;
    let b = EchoBackend::start("b").await;
    let c = EchoBackend::start("c").await;
    let dead = closed_port();
    let d = DaemonBuilder::new()
        .admin()
        .route("{ name: app, hosts: [app.test], upstream: app }")
        .route("{ name: dead, hosts: [dead.test], upstream: dead }")
        .route("{ name: mixed, hosts: [mixed.test], upstream: mixed }")
        .upstream("app", &[a.addr, b.addr], DEFAULT_TIMEOUTS)
        .upstream("dead", &[dead.addr], DEFAULT_TIMEOUTS)
        .upstream("mixed", &[dead.addr, c.addr], DEFAULT_TIMEOUTS)
        .start()
        .await;

    let mut body_bytes = 0;
    for i in 0..4 {
        let r = https_get(d.https, "app.test", &format!("/n/{i}")).await;
        assert_eq!(r.status, 200, "{}", r.text());
        body_bytes += r.body.len();
    }
    for _ in 0..2 {
        assert_eq!(https_get(d.https, "nowhere.test", "/").await.status, 404);
    }
    assert_eq!(https_get(d.https, "dead.test", "/").await.status, 502);
    // Round robin tries the dead server first, then retries on c.
    let r = https_get(d.https, "mixed.test", "/").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-backend"), Some("c"));

    let m = wait_for_total(&d, "ferrogate_requests_total", 8.0).await;
    let (sa, sb, sc, sd) = (
        &a.addr.to_string(),
        &b.addr.to_string(),
        &c.addr.to_string(),
        &dead.addr.to_string(),
    );
    let name = "ferrogate_requests_total";
    assert_eq!(value(&m, name, &req("app", "app", sa, "2xx")), 2.0);
    assert_eq!(value(&m, name, &req("app", "app", sb, "2xx")), 2.0);
    assert_eq!(value(&m, name, &req("app", "app", sa, "5xx")), 0.0);
    assert_eq!(value(&m, name, &req("none", "none", "none", "4xx")), 2.0);
    assert_eq!(value(&m, name, &req("dead", "dead", sd, "5xx")), 1.0);
    assert_eq!(value(&m, name, &req("mixed", "mixed", sc, "2xx")), 1.0);
    assert_eq!(value(&m, name, &req("mixed", "mixed", sd, "2xx")), 0.0);

    assert_eq!(
        value(
            &m,
            "ferrogate_upstream_connect_errors_total",
            &pair("dead", sd)
        ),
        1.0
    );
    assert_eq!(
        value(
            &m,
            "ferrogate_upstream_connect_errors_total",
            &pair("mixed", sd)
        ),
        1.0
    );
    assert_eq!(
        value(
            &m,
            "ferrogate_upstream_connect_errors_total",
            &pair("app", sa)
        ),
        0.0
    );
    assert_eq!(
        value(
            &m,
            "ferrogate_upstream_retries_total",
            &[("upstream", "mixed")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &m,
            "ferrogate_upstream_retries_total",
            &[("upstream", "dead")]
        ),
        0.0
    );
    assert_eq!(
        value(&m, "ferrogate_upstream_server_up", &pair("dead", sd)),
        0.0
    );
    assert_eq!(
        value(&m, "ferrogate_upstream_server_up", &pair("app", sa)),
        1.0
    );
    for (u, s) in [
        ("app", sa),
        ("app", sb),
        ("mixed", sc),
        ("mixed", sd),
        ("dead", sd),
    ] {
        assert_eq!(
            value(&m, "ferrogate_upstream_in_flight", &pair(u, s)),
            0.0,
            "{u} {s}"
        );
    }
    assert_eq!(
        value(
            &m,
            "ferrogate_upstream_response_seconds_count",
            &pair("app", sa)
        ),
        2.0
    );
    assert_eq!(
        value(
            &m,
            "ferrogate_upstream_response_seconds_count",
            &pair("mixed", sc)
        ),
        1.0
    );
    assert_eq!(
        value(
            &m,
            "ferrogate_request_duration_seconds_count",
            &[("route", "app")]
        ),
        4.0
    );
    assert_eq!(
        value(
            &m,
            "ferrogate_request_duration_seconds_count",
            &[("route", "none")]
        ),
        2.0
    );
    assert_eq!(
        value(
            &m,
            "ferrogate_response_body_bytes_total",
            &[("route", "app")]
        ),
        body_bytes as f64
    );
    // "No server" requests have request counts but no per-server series.
    assert_eq!(
        sample(&m, "ferrogate_upstream_in_flight", &pair("none", "none")),
        None
    );
    assert_eq!(value(&m, "ferrogate_config_generation", &[]), 1.0);
    assert!(
        value(
            &m,
            "ferrogate_certificate_expiry_seconds",
            &[("certificate", "default")]
        ) > 86_400.0
    );
    assert_eq!(
        value(
            &m,
            "ferrogate_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        1.0
    );
    // 4 + 2 + 1 + 1 TLS connections so far, plus the daemon's own readiness probe (one
    // handshake at start), none open any more.
    assert_eq!(
        value(&m, "ferrogate_connections_total", &[("listener", "https")]),
        9.0
    );
    wait_for(
        &d,
        "ferrogate_open_connections",
        &[("listener", "https")],
        0.0,
    )
    .await;
}

/// Sends one keep-alive request on a new TLS connection and leaves the connection open.
async fn keep_open(addr: SocketAddr) -> TlsStream<TcpStream> {
    let (mut tls, _) = tls_connect(addr, &TlsOptions::http1("app.test")).await;
    let r = exchange(&mut tls, &Request::get("app.test", "/keep")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    tls
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_connections_and_websockets_are_gauges() {
    let a = EchoBackend::start("a").await;
    let ws_backend = websocket_echo().await;
    let d = DaemonBuilder::new()
        .admin()
        .route("{ name: app, hosts: [app.test], upstream: app }")
        .route("{ name: ws, hosts: [ws.test], upstream: ws }")
        .upstream("app", &[a.addr], DEFAULT_TIMEOUTS)
        .upstream("ws", &[ws_backend], DEFAULT_TIMEOUTS)
        .start()
        .await;
    let https = [("listener", "https")];

    // Two idle keep-alive connections count as open between their requests.
    let first = keep_open(d.https).await;
    let second = keep_open(d.https).await;
    wait_for(&d, "ferrogate_open_connections", &https, 2.0).await;
    drop(first);
    wait_for(&d, "ferrogate_open_connections", &https, 1.0).await;
    drop(second);
    wait_for(&d, "ferrogate_open_connections", &https, 0.0).await;

    let (tls, _) = tls_connect(d.https, &TlsOptions::http1("ws.test")).await;
    let url = format!("wss://ws.test:{}/socket", d.https.port());
    let (mut ws, response) = tokio_tungstenite::client_async(url, tls)
        .await
        .expect("WebSocket handshake through the proxy");
    assert_eq!(response.status().as_u16(), 101);
    wait_for(&d, "ferrogate_open_websockets", &[("route", "ws")], 1.0).await;
    let server = ws_backend.to_string();
    let upgraded = req("ws", "ws", &server, "1xx");
    let m = admin_get(&d, "/metrics").await;
    assert_eq!(
        value(&m, "ferrogate_requests_total", &upgraded),
        0.0,
        "an open WebSocket is counted when it ends"
    );
    ws.close(None).await.expect("close");
    drop(ws);
    wait_for(&d, "ferrogate_open_websockets", &[("route", "ws")], 0.0).await;
    wait_for(&d, "ferrogate_requests_total", &upgraded, 1.0).await;
}
