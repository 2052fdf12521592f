//! More malformed and smuggling-shaped requests, against a raw-socket backend that records the
//! exact bytes it receives: each is refused with a 4xx and the backend receives nothing; an
//! ordinary request arrives in one unambiguous form, and the backend's `Server` header is dropped.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::client::{raw_exchange, raw_status};
use crate::harness::{DaemonBuilder, DEFAULT_TIMEOUTS};

/// A backend that records every byte received and answers each read with a small 200.
async fn recording_backend() -> (SocketAddr, Arc<Mutex<Vec<u8>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let record = record.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 8192];
                for _ in 0..64 {
                    let Ok(Ok(n)) =
                        tokio::time::timeout(Duration::from_secs(5), sock.read(&mut buf)).await
                    else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    record.lock().unwrap().extend_from_slice(&buf[..n]);
                    let _ = sock
                        .write_all(b"HTTP/1.1 200 OK\r\nServer: secret-backend/1.0\r\nContent-Length: 2\r\n\r\nok")
                        .await;
                }
            });
        }
    });
    (addr, seen)
}

fn refused_cases() -> Vec<(&'static str, &'static [u8])> {
    vec![
        ("obs-fold continuation line", b"GET / HTTP/1.1\r\nHost: m.test\r\nX-A: 1\r\n  folded\r\n\r\n"),
        ("HTTP/0.9 request line", b"GET /\r\n\r\n"),
        ("duplicate identical Content-Length", b"POST / HTTP/1.1\r\nHost: m.test\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello"),
        ("Content-Length with a sign", b"POST / HTTP/1.1\r\nHost: m.test\r\nContent-Length: +5\r\n\r\nhello"),
        ("space before the header colon", b"GET / HTTP/1.1\r\nHost: m.test\r\nContent-Length : 5\r\n\r\nhello"),
        ("DEL byte in a header value", b"GET / HTTP/1.1\r\nHost: m.test\r\nX-A: a\x7fb\r\n\r\n"),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smuggling_shapes_are_refused_or_forwarded_unambiguously() {
    let (backend, seen) = recording_backend().await;
    let d = DaemonBuilder::new()
        .extra_listener("plain", false)
        .route("{ name: plain, listener: plain, upstream: raw }")
        .upstream("raw", &[backend], DEFAULT_TIMEOUTS)
        .start()
        .await;
    let plain = d.extra("plain");
    for (what, bytes) in refused_cases() {
        let mut tcp = TcpStream::connect(plain).await.unwrap();
        let answer = raw_exchange(&mut tcp, bytes).await;
        let status = raw_status(&answer);
        assert!(
            matches!(status, Some(400..=499)),
            "{what}: expected a 4xx, got {status:?}"
        );
        let forwarded = String::from_utf8_lossy(&seen.lock().unwrap()).into_owned();
        assert!(
            forwarded.is_empty(),
            "{what} reached the backend as {forwarded:?}"
        );
    }

    // Absolute-form naming another host than Host: refused (the two could route differently
    // here and at the backend), nothing forwarded.
    let mut tcp = TcpStream::connect(plain).await.unwrap();
    let answer = raw_exchange(
        &mut tcp,
        b"POST http://other.test/x HTTP/1.1\r\nHost: m.test\r\nContent-Length: 5\r\n\r\nhello",
    )
    .await;
    assert_eq!(raw_status(&answer), Some(400));
    assert!(seen.lock().unwrap().is_empty());

    // An ordinary request goes through as exactly one request, and the backend's Server header
    // is not passed on.
    let mut tcp = TcpStream::connect(plain).await.unwrap();
    let answer = raw_exchange(
        &mut tcp,
        b"POST /x HTTP/1.1\r\nHost: m.test\r\nContent-Length: 5\r\n\r\nhello",
    )
    .await;
    assert_eq!(raw_status(&answer), Some(200));
    let answer_text = String::from_utf8_lossy(&answer).to_ascii_lowercase();
    assert!(!answer_text.contains("secret-backend"), "{answer_text}");
    let forwarded = String::from_utf8_lossy(&seen.lock().unwrap()).to_ascii_lowercase();
    assert_eq!(forwarded.matches("\r\nhost:").count(), 1, "{forwarded:?}");
    assert_eq!(
        forwarded.matches("\r\ncontent-length:").count(),
        1,
        "{forwarded:?}"
    );
    assert!(forwarded.ends_with("\r\n\r\nhello"), "{forwarded:?}");
}
