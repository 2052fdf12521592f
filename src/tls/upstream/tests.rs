//! The compiled settings of `upstreams.NAME.tls`: pingora peer fields, server names, and the
//! checker's rustls configuration in real handshakes against a loopback TLS server.

use std::path::PathBuf;

use tokio::net::{TcpListener, TcpStream};

use super::*;
use crate::config::model::{CaBundle, ClientIdentity};
use crate::test_pki::TestCa;

fn settings(verification: ServerVerification) -> UpstreamTls {
    UpstreamTls {
        sni: None,
        verification,
        identity: None,
        alpn: UpstreamAlpn::Http1,
    }
}

fn bundle(ca: &TestCa) -> ServerVerification {
    ServerVerification::Bundle(CaBundle {
        path: PathBuf::from("ca.pem"),
        certificates: vec![ca.der()].into(),
    })
}

#[test]
fn server_names_come_from_sni_or_the_address_as_written() {
    let ca = TestCa::new("CA");
    let tls = ServerTls::compile(&settings(bundle(&ca)));
    assert_eq!(tls.server_name("api.example.com:443"), "api.example.com");
    assert_eq!(tls.server_name("10.0.0.5:8443"), "10.0.0.5");
    assert_eq!(tls.server_name("[::1]:8443"), "::1");
    let mut named = settings(bundle(&ca));
    named.sni = Some("internal.example".into());
    assert_eq!(
        ServerTls::compile(&named).server_name("10.0.0.5:8443"),
        "internal.example"
    );
}

#[test]
fn peers_get_every_setting_pingora_reads() {
    let ca = TestCa::new("CA");
    let client = ca.client(&[(rcgen::DnType::CommonName, "edge")]);
    let mut with_all = settings(bundle(&ca));
    with_all.identity = Some(ClientIdentity {
        cert_path: "c.pem".into(),
        key_path: "c.key".into(),
        chain: vec![client.der.clone()].into(),
        key: Arc::new(client.key.clone_key()),
    });
    let tls = ServerTls::compile(&with_all);
    let peer = tls.peer(
        SocketAddr::from(([127, 0, 0, 1], 8443)),
        "api.internal:8443",
    );
    assert_eq!(peer.scheme, pingora::upstreams::peer::Scheme::HTTPS);
    assert_eq!(peer.sni, "api.internal");
    assert!(peer.options.verify_cert && peer.options.verify_hostname);
    assert_eq!(peer.options.ca.as_ref().map(|ca| ca.len()), Some(1));
    assert!(peer.client_cert_key.is_some());
    assert_eq!(peer.options.alpn, ALPN::H1);

    let system = ServerTls::compile(&settings(ServerVerification::SystemRoots(
        vec![ca.der()].into(),
    )));
    let peer = system.peer(SocketAddr::from(([10, 0, 0, 5], 443)), "10.0.0.5:443");
    assert!(peer.options.ca.is_none(), "pingora's own system roots");
    assert_eq!(
        peer.sni, "10.0.0.5",
        "an address is verified, never skipped"
    );
    assert_eq!(peer.options.alpn, ALPN::H1);

    let off = ServerTls::compile(&settings(ServerVerification::Off));
    assert!(!off.verifies());
    let peer = off.peer(SocketAddr::from(([10, 0, 0, 5], 443)), "10.0.0.5:443");
    assert!(!peer.options.verify_cert && !peer.options.verify_hostname);
    assert_eq!(
        off.checker_config().unwrap().alpn_protocols,
        [b"http/1.1".to_vec()]
    );
}

/// Accepts one TLS connection with a certificate of `ca` for `names`; true when the handshake
/// succeeded.
async fn serve_once(ca: &TestCa, names: &[&str]) -> (SocketAddr, tokio::task::JoinHandle<bool>) {
    let server = ca.server(names);
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![server.der], server.key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let socket = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = socket.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let (tcp, _) = socket.accept().await.unwrap();
        acceptor.accept(tcp).await.is_ok()
    });
    (address, task)
}

async fn connect(tls: &ServerTls, address: SocketAddr, written: &str) -> Result<(), String> {
    let connector = tokio_rustls::TlsConnector::from(tls.checker_config().unwrap().clone());
    let tcp = TcpStream::connect(address).await.unwrap();
    let name = tls.rustls_server_name(written)?;
    connector
        .connect(name, tcp)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

#[tokio::test]
async fn the_checker_config_verifies_against_the_configured_roots() {
    let ca = TestCa::new("upstream CA");
    let tls = ServerTls::compile(&settings(bundle(&ca)));

    let (address, server) = serve_once(&ca, &["localhost"]).await;
    assert_eq!(connect(&tls, address, "localhost:1").await, Ok(()));
    assert!(server.await.unwrap());

    // An address is checked against the certificate's IP names.
    let (address, server) = serve_once(&ca, &["127.0.0.1"]).await;
    assert_eq!(connect(&tls, address, &address.to_string()).await, Ok(()));
    assert!(server.await.unwrap());

    // Another name, or another CA: refused.
    let (address, _) = serve_once(&ca, &["other.test"]).await;
    let error = connect(&tls, address, "localhost:1").await.unwrap_err();
    assert!(error.contains("certificate"), "{error}");
    let stranger = TestCa::new("another CA");
    let (address, _) = serve_once(&stranger, &["localhost"]).await;
    let error = connect(&tls, address, "localhost:1").await.unwrap_err();
    assert!(error.contains("certificate"), "{error}");

    // verify: false takes any of them.
    let off = ServerTls::compile(&settings(ServerVerification::Off));
    let (address, server) = serve_once(&stranger, &["other.test"]).await;
    assert_eq!(connect(&off, address, "localhost:1").await, Ok(()));
    assert!(server.await.unwrap());
}
