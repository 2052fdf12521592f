//! Hardening against resource exhaustion: hundreds of slowloris connections (a few header bytes
//! each, never finished) do not stop normal requests; a request body larger than the route's
//! `max_body` gets 413 and never reaches the backend.

use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::backends::EchoBackend;
use crate::client::{http_request, https_get, Request};
use crate::harness::{DaemonBuilder, DEFAULT_TIMEOUTS};

/// Slow connections opened by the test (bounded; well under the default fd limit).
const SLOW_CONNECTIONS: usize = 300;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_connections_do_not_stop_normal_requests() {
    let backend = EchoBackend::start("a").await;
    let d = DaemonBuilder::new()
        .extra_listener("plain", false)
        .route("{ name: tls, hosts: [app.test], upstream: a }")
        .route("{ name: plain, listener: plain, upstream: a }")
        .upstream("a", &[backend.addr], DEFAULT_TIMEOUTS)
        .start()
        .await;
    let plain = d.extra("plain");
    let mut slow = Vec::with_capacity(SLOW_CONNECTIONS);
    for i in 0..SLOW_CONNECTIONS {
        let target = if i % 2 == 0 { plain } else { d.https };
        let mut tcp = TcpStream::connect(target).await.unwrap();
        // Half a request head on the plain listener; a bare TCP connect (no ClientHello) on TLS.
        if target == plain {
            tcp.write_all(b"GET / HTTP/1.1\r\nHost: a\r\nX-Slow: ")
                .await
                .unwrap();
        }
        slow.push(tcp);
    }
    // A trickle: one more byte on every plain slow connection.
    for tcp in slow.iter_mut().step_by(2) {
        let _ = tcp.write_all(b"a").await;
    }
    for i in 0..20 {
        let r = tokio::time::timeout(Duration::from_secs(5), https_get(d.https, "app.test", "/"))
            .await
            .expect("a normal TLS request is answered while slow connections are open");
        assert_eq!(r.status, 200, "request {i}");
        let r = tokio::time::timeout(
            Duration::from_secs(5),
            http_request(plain, &Request::get("plain.test", "/")),
        )
        .await
        .expect("a normal plain request is answered while slow connections are open");
        assert_eq!(r.status, 200, "request {i}");
    }
    assert_eq!(backend.count(), 40, "no slow request was forwarded");
    drop(slow);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_over_max_body_get_413() {
    let backend = EchoBackend::start("a").await;
    let d = DaemonBuilder::new()
        .extra_listener("plain", false)
        .route("{ name: small, listener: plain, upstream: a, max_body: 1KB }")
        .upstream("a", &[backend.addr], DEFAULT_TIMEOUTS)
        .start()
        .await;
    let plain = d.extra("plain");
    let mut ok = Request::post("a.test", "/upload");
    ok.body = vec![b'x'; 1024];
    assert_eq!(http_request(plain, &ok).await.status, 200);
    assert_eq!(backend.count(), 1);

    // Declared too large: refused before anything is forwarded.
    let mut big = Request::post("a.test", "/upload");
    big.body = vec![b'x'; 1025];
    let r = http_request(plain, &big).await;
    assert_eq!(r.status, 413, "{}", r.text());
    assert_eq!(backend.count(), 1);

    // Chunked (no Content-Length): counted as it streams, 413 once over the limit.
    let mut tcp = TcpStream::connect(plain).await.unwrap();
    let mut raw =
        b"POST /upload HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..4 {
        raw.extend(b"200\r\n");
        raw.extend([b'y'; 0x200]);
        raw.extend(b"\r\n");
    }
    raw.extend(b"0\r\n\r\n");
    let answer = crate::client::raw_exchange(&mut tcp, &raw).await;
    assert_eq!(
        crate::client::raw_status(&answer),
        Some(413),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    // The backend never got a complete 2 KiB body.
    assert!(backend.requests().iter().all(|r| r.body.len() <= 1024));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_per_client_address_are_capped() {
    let backend = EchoBackend::start("a").await;
    let d = DaemonBuilder::new()
        .yaml("max_connections_per_ip: 2")
        .extra_listener("plain", false)
        .route("{ name: plain, listener: plain, upstream: a }")
        .upstream("a", &[backend.addr], DEFAULT_TIMEOUTS)
        .start()
        .await;
    let plain = d.extra("plain");
    let req = Request::get("a.test", "/");
    // Two keep-alive connections, each proven live by a served request.
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut tcp = TcpStream::connect(plain).await.unwrap();
        assert_eq!(crate::client::exchange(&mut tcp, &req).await.status, 200);
        held.push(tcp);
    }
    // A third is closed without an answer.
    let mut third = TcpStream::connect(plain).await.unwrap();
    let answer = crate::client::raw_exchange(&mut third, &req.to_bytes()).await;
    assert!(answer.is_empty(), "{}", String::from_utf8_lossy(&answer));
    assert_eq!(backend.count(), 2);
    // Closing one frees its slot (the server notices the close; bounded retries).
    drop(held.pop());
    let mut served = false;
    for _ in 0..100 {
        let mut tcp = TcpStream::connect(plain).await.unwrap();
        let answer = crate::client::raw_exchange(&mut tcp, &req.to_bytes()).await;
        if crate::client::raw_status(&answer) == Some(200) {
            served = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(served, "a slot was given back when a connection closed");
}
