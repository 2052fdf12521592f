//! PROXY protocol from a raw-socket client: v1 and v2 headers on plain and TLS listeners set the
//! address the backend sees (X-Forwarded-For, X-Real-IP) and the one rate limits and access lists
//! use; a connection without a header, with a broken one, or from a peer outside
//! `proxy_protocol_from` is closed without anything reaching the backend.

use std::net::SocketAddr;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::backends::EchoBackend;
use crate::client::{exchange, raw_exchange, tls_connect_over, Request, TlsOptions};
use crate::harness::{DaemonBuilder, DEFAULT_TIMEOUTS};

fn v2_header(ip: [u8; 4], port: u16) -> Vec<u8> {
    let mut out = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    out.extend([0x21, 0x11, 0x00, 0x0c]);
    out.extend(ip);
    out.extend([127, 0, 0, 1]);
    out.extend(port.to_be_bytes());
    out.extend(443u16.to_be_bytes());
    out
}

async fn plain_with_header(addr: SocketAddr, header: &[u8], req: &Request) -> u16 {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(header).await.unwrap();
    exchange(&mut tcp, req).await.status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_headers_set_the_client_address_on_plain_and_tls_listeners() {
    let backend = EchoBackend::start("a").await;
    let d = DaemonBuilder::new()
        .extra_listener_with("lb", false, "proxy_protocol: true, proxy_protocol_from: [127.0.0.0/8]")
        .extra_listener_with("lbtls", true, "proxy_protocol: true, proxy_protocol_from: [127.0.0.1]")
        .route("{ name: plain, listener: lb, upstream: a, rate_limit: { rate: 1/h, burst: 2 }, deny: [198.51.100.0/24] }")
        .route("{ name: tls, listener: lbtls, upstream: a }")
        .upstream("a", &[backend.addr], DEFAULT_TIMEOUTS)
        .start()
        .await;
    let lb = d.extra("lb");
    let req = Request::get("any.test", "/").header("X-Forwarded-For", "6.6.6.6");

    // v1 on the plain listener: the backend sees the PROXY source, not 127.0.0.1, as the
    // client address; it is no trusted proxy, so the client's X-Forwarded-For is replaced.
    let status = plain_with_header(lb, b"PROXY TCP4 203.0.113.7 127.0.0.1 5000 80\r\n", &req).await;
    assert_eq!(status, 200);
    let seen = backend.last();
    assert_eq!(seen.header("x-real-ip"), Some("203.0.113.7"));
    assert_eq!(seen.header_all("x-forwarded-for").join(", "), "203.0.113.7");

    // The rate limit counts the PROXY address: burst 2 for 203.0.113.7, then 429; another
    // source has its own bucket.
    assert_eq!(
        plain_with_header(lb, b"PROXY TCP4 203.0.113.7 127.0.0.1 5001 80\r\n", &req).await,
        200
    );
    assert_eq!(
        plain_with_header(lb, b"PROXY TCP4 203.0.113.7 127.0.0.1 5002 80\r\n", &req).await,
        429
    );
    assert_eq!(
        plain_with_header(lb, &v2_header([203, 0, 113, 8], 7), &req).await,
        200
    );
    assert_eq!(backend.last().header("x-real-ip"), Some("203.0.113.8"));
    // The deny list sees the PROXY address too.
    assert_eq!(
        plain_with_header(lb, b"PROXY TCP4 198.51.100.1 127.0.0.1 1 80\r\n", &req).await,
        403
    );
    assert_eq!(backend.count(), 3);

    // v2 before TLS on the TLS listener.
    let mut tcp = TcpStream::connect(d.extra("lbtls")).await.unwrap();
    tcp.write_all(&v2_header([192, 0, 2, 44], 1234))
        .await
        .unwrap();
    let (mut tls, _) = tls_connect_over(tcp, &TlsOptions::http1("localhost")).await;
    let r = exchange(&mut tls, &Request::get("localhost", "/tls")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(backend.last().header("x-real-ip"), Some("192.0.2.44"));
    assert_eq!(backend.count(), 4);

    // No header, a broken header: the connection is closed, nothing forwarded.
    for bad in [
        &b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"[..],
        b"PROXY TCP4 1.2.3.4\r\nGET / HTTP/1.1\r\n\r\n",
    ] {
        let mut tcp = TcpStream::connect(lb).await.unwrap();
        let answer = raw_exchange(&mut tcp, bad).await;
        assert!(answer.is_empty(), "{}", String::from_utf8_lossy(&answer));
    }
    assert_eq!(backend.count(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_header_from_an_untrusted_peer_is_refused() {
    let backend = EchoBackend::start("a").await;
    let d = DaemonBuilder::new()
        .extra_listener_with(
            "lb",
            false,
            "proxy_protocol: true, proxy_protocol_from: [10.0.0.0/8]",
        )
        .route("{ name: plain, listener: lb, upstream: a }")
        .upstream("a", &[backend.addr], DEFAULT_TIMEOUTS)
        .start()
        .await;
    let mut tcp = TcpStream::connect(d.extra("lb")).await.unwrap();
    let answer = raw_exchange(
        &mut tcp,
        b"PROXY TCP4 203.0.113.7 127.0.0.1 5000 80\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
    )
    .await;
    assert!(answer.is_empty(), "{}", String::from_utf8_lossy(&answer));
    assert_eq!(backend.count(), 0);
}
