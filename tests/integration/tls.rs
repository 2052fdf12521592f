//! TLS on the https listener: SNI certificate selection (exact, wildcard, default), ALPN
//! negotiation, TLS 1.2 and 1.3, and the HSTS header.

use crate::backends::EchoBackend;
use crate::client::{exchange, http_get, https_get, tls_connect, Request, TlsOptions};
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
