//! Listener limits through the real daemon: `max_connections` (exact count of connections
//! served at once), `max_headers` (431), `header_timeout` (a head trickled byte by byte is cut,
//! nothing forwarded), `idle_timeout` (an idle keep-alive connection is closed), and
//! `max_connections_per_ip` taking effect after a reload.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::backends::EchoBackend;
use crate::client::{exchange, raw_exchange, raw_status, Request};
use crate::harness::{DaemonBuilder, DEFAULT_TIMEOUTS};

/// Upper bound for the daemon to close a connection it should close (never a timing assertion:
/// only the fact of the close is checked).
const CLOSE_WITHIN: Duration = Duration::from_secs(15);

/// A keep-alive connection proven live by one served request; retried briefly while earlier
/// connections (the start-up probes) are still being released.
async fn served_connection(addr: SocketAddr, req: &Request) -> TcpStream {
    let deadline = Instant::now() + CLOSE_WITHIN;
    loop {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        let answer = raw_exchange_keep(&mut tcp, req).await;
        if answer == Some(200) {
            return tcp;
        }
        assert!(Instant::now() < deadline, "no connection was served");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One request on `tcp`, keeping it open; the status, or `None` when the daemon closed it.
async fn raw_exchange_keep(tcp: &mut TcpStream, req: &Request) -> Option<u16> {
    let exchanged = tokio::time::timeout(CLOSE_WITHIN, async {
        tcp.write_all(&req.to_bytes()).await.ok()?;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let n = tcp.read(&mut chunk).await.ok()?;
            if n == 0 {
                return None;
            }
            buf.extend_from_slice(&chunk[..n]);
            if let Some((response, _)) = crate::client::parse_response(&buf, false) {
                return Some(response.status);
            }
        }
    })
    .await;
    exchanged.ok().flatten()
}

/// Whether the daemon closes `tcp` (EOF or reset) within [`CLOSE_WITHIN`], reading whatever
/// it sends first.
async fn closed_by_daemon(tcp: &mut TcpStream) -> (bool, Vec<u8>) {
    let mut seen = Vec::new();
    let result = tokio::time::timeout(CLOSE_WITHIN, async {
        let mut chunk = [0u8; 1024];
        loop {
            match tcp.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => seen.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await;
    (result.is_ok(), seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listener_limits_cap_connections_headers_and_slow_heads() {
    let backend = EchoBackend::start("a").await;
    let d = DaemonBuilder::new()
        .extra_listener_with("capped", false, "max_connections: 3")
        .extra_listener_with(
            "strict",
            false,
            "max_headers: 10, header_timeout: 1s, idle_timeout: 1s",
        )
        .route("{ name: capped, listener: capped, upstream: a }")
        .route("{ name: strict, listener: strict, upstream: a }")
        .upstream("a", &[backend.addr], DEFAULT_TIMEOUTS)
        .start()
        .await;
    let req = Request::get("a.test", "/");

    // max_connections: 3 served at once, the 4th closed unanswered.
    let capped = d.extra("capped");
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(served_connection(capped, &req).await);
    }
    let mut fourth = TcpStream::connect(capped).await.unwrap();
    let answer = raw_exchange(&mut fourth, &req.to_bytes()).await;
    assert!(answer.is_empty(), "{}", String::from_utf8_lossy(&answer));
    assert_eq!(backend.count(), 3);
    // The held ones still work.
    for tcp in &mut held {
        assert_eq!(raw_exchange_keep(tcp, &req).await, Some(200));
    }
    assert_eq!(backend.count(), 6);
    drop(held);

    // max_headers: Host + 9 is fine, Host + 10 gets 431.
    let strict = d.extra("strict");
    let mut nine = req.clone();
    let mut ten = req.clone();
    for i in 0..10 {
        if i < 9 {
            nine = nine.header(&format!("x-h{i}"), "v");
        }
        ten = ten.header(&format!("x-h{i}"), "v");
    }
    let mut tcp = TcpStream::connect(strict).await.unwrap();
    assert_eq!(exchange(&mut tcp, &nine).await.status, 200);
    let mut tcp = TcpStream::connect(strict).await.unwrap();
    let answer = raw_exchange(&mut tcp, &ten.to_bytes()).await;
    assert_eq!(raw_status(&answer), Some(431));
    assert_eq!(backend.count(), 7);

    // header_timeout: a head trickled one byte at a time (each read well within pingora's own
    // per-read timeout) is cut once the whole head took too long; nothing reaches the backend.
    let mut slow = TcpStream::connect(strict).await.unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nHost: a.test\r\n")
        .await
        .unwrap();
    let deadline = Instant::now() + CLOSE_WITHIN;
    let mut cut = false;
    while Instant::now() < deadline {
        if slow.write_all(b"X-Slow: y\r\n").await.is_err() {
            cut = true;
            break;
        }
        let mut probe = [0u8; 64];
        match tokio::time::timeout(Duration::from_millis(200), slow.read(&mut probe)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                cut = true;
                break;
            }
            Ok(Ok(_)) | Err(_) => {}
        }
    }
    assert!(cut, "a trickled head is cut by header_timeout");
    assert_eq!(backend.count(), 7);

    // idle_timeout: after a served request the idle connection is closed by the daemon.
    let mut idle = TcpStream::connect(strict).await.unwrap();
    assert_eq!(raw_exchange_keep(&mut idle, &req).await, Some(200));
    let (closed, extra) = closed_by_daemon(&mut idle).await;
    assert!(closed, "an idle keep-alive connection is closed");
    assert!(extra.is_empty());
    assert_eq!(backend.count(), 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_connections_per_ip_follows_a_reload() {
    let backend = EchoBackend::start("a").await;
    let builder = DaemonBuilder::new()
        .yaml("max_connections_per_ip: 1")
        .extra_listener("plain", false)
        .route("{ name: plain, listener: plain, upstream: a }")
        .upstream("a", &[backend.addr], DEFAULT_TIMEOUTS);
    let mut d = builder.start().await;
    let plain = d.extra("plain");
    let req = Request::get("a.test", "/");
    let _first = served_connection(plain, &req).await;
    let mut second = TcpStream::connect(plain).await.unwrap();
    assert_eq!(raw_exchange_keep(&mut second, &req).await, None);
    assert_eq!(backend.count(), 1);

    // Raised to 2 by a reload: the next connection is served once the new file is in.
    let raised = d
        .initial_yaml()
        .replace("max_connections_per_ip: 1", "max_connections_per_ip: 2");
    d.replace_config(&raised);
    let _second = served_connection(plain, &req).await;
    let mut third = TcpStream::connect(plain).await.unwrap();
    assert_eq!(raw_exchange_keep(&mut third, &req).await, None);
    assert_eq!(backend.count(), 2);
}
