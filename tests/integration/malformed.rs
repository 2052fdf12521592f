//! Malformed and smuggling-shaped requests: each gets a 4xx from the proxy, on the plain and the
//! TLS listener, and none of them reaches the backend; CONNECT gets 405.

use std::time::Duration;

use tokio::net::TcpStream;

use crate::backends::EchoBackend;
use crate::client::{http_get, https_get, raw_exchange, raw_status, tls_connect, TlsOptions};
use crate::harness::{Daemon, DaemonBuilder, DEFAULT_TIMEOUTS};

/// Host of the https route; the plain extra listener takes any host.
const HOST: &str = "m.test";

fn cases() -> Vec<(&'static str, Vec<u8>)> {
    let mut huge = b"GET / HTTP/1.1\r\nHost: m.test\r\nX-Big: ".to_vec();
    huge.extend(std::iter::repeat_n(b'a', 110 * 1024));
    huge.extend_from_slice(b"\r\n\r\n");
    vec![
        (
            "NUL byte in a header value",
            b"GET / HTTP/1.1\r\nHost: m.test\r\nX-Bad: a\x00b\r\n\r\n".to_vec(),
        ),
        (
            "control byte in a header name",
            b"GET / HTTP/1.1\r\nHost: m.test\r\nX-\x01Bad: 1\r\n\r\n".to_vec(),
        ),
        (
            "Content-Length and Transfer-Encoding together",
            b"POST / HTTP/1.1\r\nHost: m.test\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".to_vec(),
        ),
        (
            "Transfer-Encoding before Content-Length",
            b"POST / HTTP/1.1\r\nHost: m.test\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n".to_vec(),
        ),
        (
            "two different Content-Length values",
            b"POST / HTTP/1.1\r\nHost: m.test\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!".to_vec(),
        ),
        ("a 110 KiB header", huge),
    ]
}

async fn daemon(backend: &EchoBackend) -> Daemon {
    DaemonBuilder::new()
        .extra_listener("plain", false)
        .route("{ name: tls, hosts: [m.test], upstream: echo }")
        .route("{ name: plain, listener: plain, upstream: echo }")
        .upstream("echo", &[backend.addr], DEFAULT_TIMEOUTS)
        .start()
        .await
}

fn assert_refused(what: &str, listener: &str, raw: &[u8]) {
    let status = raw_status(raw);
    eprintln!("{what} on {listener}: {status:?}");
    assert!(
        matches!(status, Some(400..=499)),
        "{what} on {listener}: expected a 4xx, got {status:?}: {:?}",
        String::from_utf8_lossy(&raw[..raw.len().min(300)])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_on_plain_listener_never_reach_the_backend() {
    let echo = EchoBackend::start("echo").await;
    let d = daemon(&echo).await;
    let plain = d.extra("plain");
    for (what, bytes) in cases() {
        let mut tcp = TcpStream::connect(plain).await.expect("connect");
        let raw = raw_exchange(&mut tcp, &bytes).await;
        assert_refused(what, "plain", &raw);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        echo.count(),
        0,
        "backend received: {:?}",
        echo.requests()
            .iter()
            .map(|r| (&r.method, &r.target))
            .collect::<Vec<_>>()
    );
    // The same listener does proxy a well-formed request.
    let r = http_get(plain, HOST, "/ok").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(echo.count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_on_tls_listener_never_reach_the_backend() {
    let echo = EchoBackend::start("echo").await;
    let d = daemon(&echo).await;
    for (what, bytes) in cases() {
        let (mut tls, _) = tls_connect(d.https, &TlsOptions::http1(HOST)).await;
        let raw = raw_exchange(&mut tls, &bytes).await;
        assert_refused(what, "https", &raw);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(echo.count(), 0, "backend received: {:?}", echo.requests());
    let r = https_get(d.https, HOST, "/ok").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(echo.count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_is_refused_with_405_and_the_connection_closes() {
    let echo = EchoBackend::start("echo").await;
    let d = daemon(&echo).await;
    let plain = d.extra("plain");
    let mut tcp = TcpStream::connect(plain).await.expect("connect");
    let raw = raw_exchange(
        &mut tcp,
        b"CONNECT m.test:443 HTTP/1.1\r\nHost: m.test:443\r\n\r\n",
    )
    .await;
    assert_eq!(
        raw_status(&raw),
        Some(405),
        "{}",
        String::from_utf8_lossy(&raw)
    );
    assert!(String::from_utf8_lossy(&raw)
        .to_ascii_lowercase()
        .contains("connection: close"));
    assert_eq!(echo.count(), 0);
}
