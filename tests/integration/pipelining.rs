//! HTTP/1.1 pipelining (RFC 9112 §9.3.2) through the real daemon: requests a client sends before
//! the answers to its earlier ones are each forwarded and answered, one after another and in
//! order, whether they arrive in the same write as the first or while the daemon is still
//! waiting for a slow server's answer to it.

use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::backends::{slow_server, EchoBackend};
use crate::client::read_responses;
use crate::harness::{DaemonBuilder, DEFAULT_TIMEOUTS};

/// Bound on waiting for the answers (only their arrival is checked, not the time).
const WITHIN: Duration = Duration::from_secs(15);

/// Reads `count` responses from `tcp`, however the reads split them: (status, body).
async fn responses(tcp: &mut TcpStream, count: usize) -> Vec<(u16, String)> {
    read_responses(tcp, count, WITHIN)
        .await
        .into_iter()
        .map(|r| (r.status, r.text()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_in_one_write_are_answered_in_order() {
    let a = EchoBackend::start("a").await;
    let d = DaemonBuilder::new()
        .extra_listener("lb", false)
        .route("{ name: app, listener: lb, upstream: a }")
        .upstream("a", &[a.addr], DEFAULT_TIMEOUTS)
        .start()
        .await;
    let mut tcp = TcpStream::connect(d.extra("lb")).await.expect("connect");
    tcp.write_all(
        b"GET /one HTTP/1.1\r\nHost: app.test\r\n\r\n\
          POST /two HTTP/1.1\r\nHost: app.test\r\nContent-Length: 5\r\n\r\nhello\
          GET /three HTTP/1.1\r\nHost: app.test\r\n\r\n",
    )
    .await
    .expect("write");
    let got = responses(&mut tcp, 3).await;
    for ((status, body), target) in got.iter().zip(["/one", "/two", "/three"]) {
        assert_eq!(*status, 200, "{body}");
        assert!(body.contains(&format!("target: {target}\n")), "{body}");
    }
    let sent: Vec<(String, Vec<u8>)> = a
        .requests()
        .into_iter()
        .map(|r| (r.target, r.body))
        .collect();
    assert_eq!(
        sent,
        vec![
            ("/one".to_string(), Vec::new()),
            ("/two".to_string(), b"hello".to_vec()),
            ("/three".to_string(), Vec::new()),
        ]
    );
    // The connection stays usable afterwards.
    tcp.write_all(b"GET /four HTTP/1.1\r\nHost: app.test\r\n\r\n")
        .await
        .expect("write");
    let got = responses(&mut tcp, 1).await;
    assert!(got[0].1.contains("target: /four\n"), "{got:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_sent_while_the_last_waits_for_its_server_is_answered_after_it() {
    let a = EchoBackend::start("a").await;
    let slow = slow_server(Duration::from_millis(600)).await;
    let d = DaemonBuilder::new()
        .extra_listener("lb", false)
        .route("{ name: slow, listener: lb, path_prefix: /slow, upstream: s }")
        .route("{ name: app, listener: lb, upstream: a }")
        .upstream("s", &[slow], DEFAULT_TIMEOUTS)
        .upstream("a", &[a.addr], DEFAULT_TIMEOUTS)
        .start()
        .await;
    let mut tcp = TcpStream::connect(d.extra("lb")).await.expect("connect");
    tcp.write_all(b"GET /slow HTTP/1.1\r\nHost: app.test\r\n\r\n")
        .await
        .expect("write");
    // Well past the moment the daemon starts watching the client for going away.
    tokio::time::sleep(Duration::from_millis(200)).await;
    tcp.write_all(b"GET /next HTTP/1.1\r\nHost: app.test\r\n\r\n")
        .await
        .expect("write");
    let got = responses(&mut tcp, 2).await;
    assert_eq!(got[0], (200, "slow\n".to_string()));
    assert_eq!(got[1].0, 200, "{got:?}");
    assert!(got[1].1.contains("target: /next\n"), "{got:?}");
}
