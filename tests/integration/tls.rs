//! TLS on the https listener: SNI certificate selection (exact, wildcard, default), ALPN
//! negotiation, TLS 1.2 and 1.3, the server's cipher suite order, session resumption, the
//! handshake deadline, the HSTS header, and HTTP/2 receive windows for uploads.

use crate::backends::EchoBackend;
use crate::client::{
    exchange, http_get, https_get, post_quantum_client, resuming_client, tls_connect,
    tls_connect_with, Request, TlsOptions,
};
use crate::harness::{Daemon, DaemonBuilder, DEFAULT_TIMEOUTS};

async fn three_cert_daemon(backend: &EchoBackend) -> Daemon {
    DaemonBuilder::new()
        .hsts("1y")
        .certificate("first", &["first.test"])
        .certificate("second", &["second.test", "alt.second.test"])
        .certificate("wild", &["*.wild.test"])
        .route("{ name: any, upstream: a }")
        .upstream("a", &[backend.addr], DEFAULT_TIMEOUTS)
        .start()
        .await
}

/// A daemon with one certificate (`first.test`) whose https listener has these option keys.
async fn one_cert_daemon_with(backend: &EchoBackend, https_keys: &str) -> Daemon {
    DaemonBuilder::new()
        .certificate("first", &["first.test"])
        .https_listener_with(https_keys)
        .route("{ name: any, upstream: a }")
        .upstream("a", &[backend.addr], DEFAULT_TIMEOUTS)
        .start()
        .await
}

fn with_sni(sni: Option<&str>) -> TlsOptions {
    TlsOptions {
        sni: sni.map(str::to_string),
        alpn: vec![b"http/1.1".to_vec()],
        version: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sni_selects_the_certificate() {
    let a = EchoBackend::start("a").await;
    let d = three_cert_daemon(&a).await;
    let cases = [
        (Some("first.test"), "first"),
        (Some("second.test"), "second"),
        (Some("alt.second.test"), "second"),
        (Some("SECOND.test"), "second"),
        (Some("x.wild.test"), "wild"),
        // Unknown names and no SNI at all get the first certificate.
        (Some("unknown.test"), "first"),
        (Some("wild.test"), "first"),
        (None, "first"),
    ];
    for (sni, expected) in cases {
        let (mut tls, info) = tls_connect(d.https, &with_sni(sni)).await;
        let presented = info.peer_cert.expect("a peer certificate");
        assert!(
            presented == d.cert(expected).der,
            "SNI {sni:?}: expected certificate {expected}, got another one"
        );
        // The connection is usable after the handshake.
        let host = sni.unwrap_or("nosni.test");
        let r = exchange(&mut tls, &Request::get(host, "/")).await;
        assert_eq!(r.status, 200, "SNI {sni:?}: {}", r.text());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alpn_offers_h2_and_http1() {
    let a = EchoBackend::start("a").await;
    let d = three_cert_daemon(&a).await;

    let both = TlsOptions {
        sni: Some("first.test".into()),
        alpn: vec![b"h2".to_vec(), b"http/1.1".to_vec()],
        version: None,
    };
    let (_, info) = tls_connect(d.https, &both).await;
    assert_eq!(info.alpn.as_deref(), Some(&b"h2"[..]));

    let (mut tls, info) = tls_connect(d.https, &with_sni(Some("first.test"))).await;
    assert_eq!(info.alpn.as_deref(), Some(&b"http/1.1"[..]));
    let r = exchange(&mut tls, &Request::get("first.test", "/")).await;
    assert_eq!(r.status, 200);

    // A client offering no ALPN still speaks HTTP/1.1.
    let none = TlsOptions {
        sni: Some("first.test".into()),
        alpn: Vec::new(),
        version: None,
    };
    let (mut tls, info) = tls_connect(d.https, &none).await;
    assert_eq!(info.alpn, None);
    let r = exchange(&mut tls, &Request::get("first.test", "/")).await;
    assert_eq!(r.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls12_and_tls13_are_both_accepted() {
    let a = EchoBackend::start("a").await;
    let d = three_cert_daemon(&a).await;
    for (version, expected) in [
        (&rustls::version::TLS12, rustls::ProtocolVersion::TLSv1_2),
        (&rustls::version::TLS13, rustls::ProtocolVersion::TLSv1_3),
    ] {
        let opts = TlsOptions {
            version: Some(version),
            ..with_sni(Some("second.test"))
        };
        let (mut tls, info) = tls_connect(d.https, &opts).await;
        assert_eq!(info.version, Some(expected));
        assert!(info.peer_cert.expect("peer cert") == d.cert("second").der);
        let r = exchange(&mut tls, &Request::get("second.test", "/")).await;
        assert_eq!(r.status, 200);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_picks_aes_128_and_sessions_resume() {
    use rustls::CipherSuite;
    let a = EchoBackend::start("a").await;
    let d = three_cert_daemon(&a).await;
    for (version, suite) in [
        (
            &rustls::version::TLS13,
            CipherSuite::TLS13_AES_128_GCM_SHA256,
        ),
        (
            &rustls::version::TLS12,
            CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        ),
    ] {
        // The client lists AES-256 first, as OpenSSL-based clients do; the server's order wins.
        let client = resuming_client(version);
        let (mut tls, info) = tls_connect_with(d.https, &client, "first.test").await;
        assert_eq!(info.suite, Some(suite), "{version:?}");
        assert!(
            !info.resumed,
            "{version:?}: the first handshake is a full one"
        );
        // Reading a response also takes in the session ticket sent after the handshake.
        let r = exchange(&mut tls, &Request::get("first.test", "/")).await;
        assert_eq!(r.status, 200);
        drop(tls);
        for round in 0..3 {
            let (mut tls, info) = tls_connect_with(d.https, &client, "first.test").await;
            assert!(
                info.resumed,
                "{version:?}: handshake {round} after the first resumes"
            );
            let r = exchange(&mut tls, &Request::get("first.test", "/")).await;
            assert_eq!(r.status, 200);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_asking_for_the_post_quantum_hybrid_gets_it() {
    let a = EchoBackend::start("a").await;
    let d = three_cert_daemon(&a).await;
    let (mut tls, info) = tls_connect_with(d.https, &post_quantum_client(), "first.test").await;
    assert_eq!(info.kx_group, Some(rustls::NamedGroup::X25519MLKEM768));
    let r = exchange(&mut tls, &Request::get("first.test", "/")).await;
    assert_eq!(r.status, 200);
    // An OpenSSL-like client without it gets X25519.
    let client = resuming_client(&rustls::version::TLS13);
    let (_, info) = tls_connect_with(d.https, &client, "first.test").await;
    assert_eq!(info.kx_group, Some(rustls::NamedGroup::X25519));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_handshake_is_closed_at_header_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let a = EchoBackend::start("a").await;
    let d = one_cert_daemon_with(&a, "header_timeout: 1s").await;
    // Half a ClientHello record header, then nothing.
    let mut tcp = tokio::net::TcpStream::connect(d.https).await.unwrap();
    tcp.write_all(&[0x16, 0x03, 0x01]).await.unwrap();
    let started = std::time::Instant::now();
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(std::time::Duration::from_secs(10), tcp.read(&mut buf))
        .await
        .expect("the daemon closes a stalled handshake");
    assert!(
        matches!(read, Ok(0) | Err(_)),
        "closed, nothing sent: {read:?}"
    );
    assert!(started.elapsed() >= std::time::Duration::from_millis(900));
    // The listener still serves complete handshakes.
    let (mut tls, _) = tls_connect(d.https, &with_sni(Some("first.test"))).await;
    let r = exchange(&mut tls, &Request::get("first.test", "/")).await;
    assert_eq!(r.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hsts_header_on_https_only() {
    let a = EchoBackend::start("a").await;
    let d = three_cert_daemon(&a).await;
    let r = https_get(d.https, "first.test", "/").await;
    assert_eq!(r.status, 200);
    let hsts = r
        .header("strict-transport-security")
        .expect("HSTS header on an https response");
    assert!(
        hsts.starts_with("max-age=31536000"),
        "1y should be 31536000 seconds: {hsts}"
    );
    // RFC 6797 7.2: never over plain HTTP.
    let r = http_get(d.http, "first.test", "/").await;
    assert_eq!(r.status, 308);
    assert_eq!(r.header("strict-transport-security"), None);
}

/// An h2 POST to `/upload` with `body_len` announced, headers sent, body not yet.
async fn h2_post(
    addr: std::net::SocketAddr,
    body_len: usize,
) -> (h2::client::ResponseFuture, h2::SendStream<bytes::Bytes>) {
    let opts = TlsOptions {
        sni: Some("first.test".into()),
        alpn: vec![b"h2".to_vec()],
        version: None,
    };
    let (tls, info) = tls_connect(addr, &opts).await;
    assert_eq!(info.alpn.as_deref(), Some(&b"h2"[..]));
    // The client's own send buffer (400 KiB by default) must not be what limits the window.
    let (client, connection) = h2::client::Builder::new()
        .max_send_buffer_size(16 << 20)
        .handshake(tls)
        .await
        .expect("h2 handshake");
    tokio::spawn(connection);
    let mut client = client.ready().await.expect("h2 ready");
    let request = http::Request::post("https://first.test/upload")
        .header("content-length", body_len.to_string())
        .body(())
        .expect("request");
    client.send_request(request, false).expect("send request")
}

/// Waits until the server has granted at least `at_least` bytes of window to `stream` before
/// reading a byte of it (SETTINGS and the connection's first WINDOW_UPDATE, nothing else).
async fn window_reaches(stream: &mut h2::SendStream<bytes::Bytes>, at_least: usize) {
    stream.reserve_capacity(at_least);
    let reached = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        loop {
            let capacity = futures_util::future::poll_fn(|cx| stream.poll_capacity(cx))
                .await
                .expect("stream open")
                .expect("capacity");
            if capacity >= at_least {
                return;
            }
        }
    })
    .await;
    assert!(
        reached.is_ok(),
        "window stayed at {} bytes, wanted {at_least}",
        stream.capacity()
    );
}

/// Over h2 a client may send a megabyte on one stream before any window update (64 KiB per
/// round trip would cap an upload at 1.3 MB/s over a 50 ms path), and an upload larger than
/// both windows arrives whole at the backend.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_uploads_get_a_megabyte_window_and_arrive_whole() {
    let a = EchoBackend::start("a").await;
    let d = three_cert_daemon(&a).await;
    let body_len = 3 * 1024 * 1024 + 123;
    let (response, mut stream) = h2_post(d.https, body_len).await;
    window_reaches(&mut stream, 1 << 20).await;

    let body: Vec<u8> = (0..body_len).map(|i| (i % 251) as u8).collect();
    let mut sent = 0;
    while sent < body.len() {
        if stream.capacity() == 0 {
            stream.reserve_capacity(body.len() - sent);
            futures_util::future::poll_fn(|cx| stream.poll_capacity(cx))
                .await
                .expect("stream open")
                .expect("capacity");
            continue;
        }
        let n = stream.capacity().min(body.len() - sent);
        let end = sent + n == body.len();
        stream
            .send_data(bytes::Bytes::copy_from_slice(&body[sent..sent + n]), end)
            .expect("send data");
        sent += n;
    }
    let response = tokio::time::timeout(std::time::Duration::from_secs(10), response)
        .await
        .expect("response in time")
        .expect("response");
    assert_eq!(response.status(), 200);
    let seen = a.last();
    assert_eq!(seen.method, "POST");
    assert_eq!(seen.body.len(), body_len);
    assert!(seen.body == body, "the body arrived altered");
}

/// `h2_window` on a listener sets the window its h2 clients get.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_s_h2_window_is_what_its_clients_get() {
    let a = EchoBackend::start("a").await;
    let d = one_cert_daemon_with(&a, "h2_window: 4MB").await;
    let (_response, mut stream) = h2_post(d.https, 8 << 20).await;
    window_reaches(&mut stream, 4 << 20).await;
}
