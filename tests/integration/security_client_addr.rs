//! The resolved client address through the built-in listeners: PROXY v1 and v2 headers from a
//! raw-socket client on `listeners.http` set the address the backend sees, the one a client_ip
//! rate limit counts (exact counts), the one `sticky: client_ip` pins, and the access log's; a
//! PROXY header on `listeners.https` from a peer outside `proxy_protocol_from` is refused; behind
//! `trusted_proxies` the X-Forwarded-For client is the one pinned, counted and logged.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::backends::EchoBackend;
use crate::client::{exchange, raw_exchange, Request, Response};
use crate::harness::{Daemon, DaemonBuilder};

/// How long an access line may take to reach the log file.
const LOG_TIMEOUT: Duration = Duration::from_secs(5);

fn v2_header(ip: [u8; 4], port: u16) -> Vec<u8> {
    let mut out = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    out.extend([0x21, 0x11, 0x00, 0x0c]);
    out.extend(ip);
    out.extend([127, 0, 0, 1]);
    out.extend(port.to_be_bytes());
    out.extend(80u16.to_be_bytes());
    out
}

async fn with_header(addr: SocketAddr, header: &[u8], req: &Request) -> Response {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(header).await.unwrap();
    exchange(&mut tcp, req).await
}

/// Waits for an access line naming `request_id` and returns it.
async fn access_line(d: &Daemon, request_id: &str) -> String {
    let deadline = Instant::now() + LOG_TIMEOUT;
    loop {
        let log = d.log();
        if let Some(line) = log
            .lines()
            .find(|l| l.contains("access") && l.contains(request_id))
        {
            return line.to_string();
        }
        assert!(Instant::now() < deadline, "no access line for {request_id}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn two_backends_yaml(a: SocketAddr, b: SocketAddr) -> String {
    format!(
        "    servers: [ {{ address: {a} }}, {{ address: {b} }} ]\n    sticky: {{ mode: client_ip, ttl: 1h }}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_headers_on_the_builtin_listeners_feed_limits_stickiness_and_logs() {
    let (a, b) = (EchoBackend::start("a").await, EchoBackend::start("b").await);
    let d = DaemonBuilder::new()
        .http_listener_with("proxy_protocol: true, proxy_protocol_from: [127.0.0.0/8]")
        .https_listener_with("proxy_protocol: true, proxy_protocol_from: [192.0.2.0/24]")
        .route("{ name: app, listener: http, upstream: app, rate_limit: { key: client_ip, rate: 1/h, burst: 3 } }")
        .route("{ name: tls, upstream: app }")
        .upstream_yaml("app", &two_backends_yaml(a.addr, b.addr))
        .start()
        .await;
    let req = |id: &str| {
        Request::get("any.test", "/")
            .header("X-Forwarded-For", "6.6.6.6")
            .header("X-Request-Id", id)
    };

    // v1 from 203.0.113.7: three requests in the burst, all on one backend, then 429.
    let mut first_client = BTreeSet::new();
    for port in 0..3u16 {
        let header = format!("PROXY TCP4 203.0.113.7 127.0.0.1 {} 80\r\n", 5000 + port);
        let r = with_header(d.http, header.as_bytes(), &req(&format!("v1-{port}"))).await;
        assert_eq!(r.status, 200, "{}", r.text());
        first_client.insert(r.header("x-backend").unwrap_or_default().to_string());
    }
    let refused = with_header(
        d.http,
        b"PROXY TCP4 203.0.113.7 127.0.0.1 5003 80\r\n",
        &req("v1-refused"),
    )
    .await;
    assert_eq!(refused.status, 429);
    assert_eq!(first_client.len(), 1, "client_ip pins one backend");

    // v2 from 198.51.100.9: its own bucket (three more pass) and, as a new client, the other
    // backend; the peer address (127.0.0.1 for all of them) would have pinned the same one.
    let mut second_client = BTreeSet::new();
    for port in 0..3u16 {
        let r = with_header(
            d.http,
            &v2_header([198, 51, 100, 9], 7000 + port),
            &req(&format!("v2-{port}")),
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.text());
        second_client.insert(r.header("x-backend").unwrap_or_default().to_string());
    }
    assert_eq!(second_client.len(), 1);
    assert_ne!(
        first_client, second_client,
        "stickiness follows the PROXY address"
    );
    assert_eq!(a.count() + b.count(), 6);

    // What the backend saw: the declared address, the client's own X-Forwarded-For replaced.
    let seen: Vec<_> = a.requests().into_iter().chain(b.requests()).collect();
    let real_ips: BTreeSet<_> = seen
        .iter()
        .map(|r| r.header("x-real-ip").unwrap_or_default().to_string())
        .collect();
    assert_eq!(
        real_ips,
        BTreeSet::from(["198.51.100.9".to_string(), "203.0.113.7".to_string()])
    );
    for r in &seen {
        assert_eq!(
            r.header_all("x-forwarded-for"),
            [r.header("x-real-ip").unwrap()]
        );
    }
    // The access log names the declared client.
    assert!(access_line(&d, "v1-refused").await.contains("203.0.113.7"));
    assert!(access_line(&d, "v2-2").await.contains("198.51.100.9"));

    // 127.0.0.1 is not in the https listener's proxy_protocol_from: closed, nothing forwarded.
    let mut tcp = TcpStream::connect(d.https).await.unwrap();
    let answer = raw_exchange(&mut tcp, b"PROXY TCP4 203.0.113.7 127.0.0.1 1 443\r\n").await;
    assert!(answer.is_empty(), "{}", String::from_utf8_lossy(&answer));
    assert_eq!(a.count() + b.count(), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trusted_proxy_clients_are_pinned_counted_and_logged() {
    let (a, b) = (EchoBackend::start("a").await, EchoBackend::start("b").await);
    let d = DaemonBuilder::new()
        .yaml("trusted_proxies: [127.0.0.0/8]")
        .route("{ name: app, listener: http, upstream: app, rate_limit: { key: client_ip, rate: 1/h, burst: 2 } }")
        .upstream_yaml("app", &two_backends_yaml(a.addr, b.addr))
        .start()
        .await;
    let send = |client: &str, id: &str| {
        let req = Request::get("any.test", "/")
            .header("X-Forwarded-For", client)
            .header("X-Request-Id", id);
        async move {
            let mut tcp = TcpStream::connect(d.http).await.unwrap();
            exchange(&mut tcp, &req).await
        }
    };
    let mut pinned = Vec::new();
    for client in ["203.0.113.1", "203.0.113.2"] {
        let mut backends = BTreeSet::new();
        for n in 0..2 {
            let r = send(client, &format!("{client}-{n}")).await;
            assert_eq!(r.status, 200);
            backends.insert(r.header("x-backend").unwrap_or_default().to_string());
        }
        assert_eq!(send(client, &format!("{client}-over")).await.status, 429);
        assert_eq!(backends.len(), 1);
        pinned.push(backends);
    }
    assert_ne!(pinned[0], pinned[1]);
    assert_eq!(a.count() + b.count(), 4);
    assert!(access_line(&d, "203.0.113.2-over")
        .await
        .contains("client=203.0.113.2"));
}
