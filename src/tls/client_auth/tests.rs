//! Client certificate verification through a real pingora TLS handshake on loopback, the subject
//! and fingerprint recorded, and the headers made from them.

use std::net::SocketAddr;
use std::path::PathBuf;

use pingora::protocols::l4::stream::Stream as L4Stream;
use pingora::protocols::Ssl;
use rcgen::DnType;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::net::{TcpListener, TcpStream};

use super::*;
use crate::config::model::{CaBundle, Listener};
use crate::test_pki::{Issued, TestCa};
use crate::tls::listener::acceptor_for;

#[derive(Debug)]
struct OneCertificate(Arc<CertifiedKey>);

impl ResolvesServerCert for OneCertificate {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

fn server_certificates(ca: &TestCa) -> Arc<OneCertificate> {
    let server = ca.server(&["localhost"]);
    let key = rustls::crypto::ring::sign::any_supported_type(&server.key).unwrap();
    Arc::new(OneCertificate(Arc::new(CertifiedKey::new(
        vec![server.der],
        key,
    ))))
}

fn listener(mode: ClientAuthMode, clients: &TestCa) -> Listener {
    Listener {
        name: "https".into(),
        address: SocketAddr::from(([127, 0, 0, 1], 0)),
        tls: true,
        redirect_to_https: false,
        proxy_protocol: None,
        limits: Default::default(),
        client_auth: Some(ClientAuth {
            mode,
            ca: CaBundle {
                path: PathBuf::from("clients-ca.pem"),
                certificates: vec![clients.der()].into(),
            },
        }),
    }
}

/// One handshake between the listener's acceptor and a client trusting `server_ca` and showing
/// `client` (or no certificate): the server side's TLS digest, or its error.
async fn handshake(
    listener: &Listener,
    server_ca: &TestCa,
    client: Option<&Issued>,
) -> Result<Arc<SslDigest>, String> {
    let acceptor = acceptor_for(server_certificates(server_ca), listener).unwrap();
    let socket = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = socket.local_addr().unwrap();
    let mut roots = RootCertStore::empty();
    roots.add(server_ca.der()).unwrap();
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots);
    let config = match client {
        Some(issued) => builder
            .with_client_auth_cert(vec![issued.der.clone()], issued.key.clone_key())
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let client_side = async move {
        let tcp = TcpStream::connect(address).await.unwrap();
        let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
        // Read until the server closes or answers, so a refusal after the client's Finished
        // (TLS 1.3) is seen by the server first.
        if let Ok(mut tls) = connector.connect(name, tcp).await {
            use tokio::io::AsyncReadExt;
            let mut byte = [0u8; 1];
            let _ = tls.read(&mut byte).await;
        }
    };
    let server_side = async move {
        let (tcp, _) = socket.accept().await.unwrap();
        let stream = L4Stream::from(tcp);
        match acceptor.tls_handshake(stream).await {
            Ok(tls) => tls
                .get_ssl_digest()
                .ok_or_else(|| "no TLS digest".to_string()),
            Err(error) => Err(error.to_string()),
        }
    };
    let (_, digest) = tokio::join!(client_side, server_side);
    digest
}

#[tokio::test]
async fn a_verified_certificate_is_recorded_with_its_subject_and_fingerprint() {
    let server_ca = TestCa::new("server CA");
    let clients = TestCa::new("client CA");
    let alice = clients.client(&[
        (DnType::CountryName, "DE"),
        (DnType::OrganizationName, "Acme, Inc."),
        (DnType::CommonName, "alice"),
    ]);
    for mode in [ClientAuthMode::Required, ClientAuthMode::Optional] {
        let digest = handshake(&listener(mode, &clients), &server_ca, Some(&alice))
            .await
            .unwrap_or_else(|e| panic!("{mode:?}: {e}"));
        let headers = verified_client_cert(Some(&digest)).expect("a verified certificate");
        assert_eq!(headers.verify, "SUCCESS");
        assert_eq!(
            headers.subject.unwrap(),
            "CN=alice,O=Acme\\, Inc.,C=DE",
            "{mode:?}"
        );
        let expected = ring::digest::digest(&ring::digest::SHA256, alice.der.as_ref());
        let hex: String = expected
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(headers.fingerprint.unwrap(), hex.as_str());
        // pingora's own digest of the certificate is the same SHA-256.
        assert_eq!(digest.cert_digest, expected.as_ref());
    }
}

#[tokio::test]
async fn required_refuses_no_certificate_and_optional_admits_it_as_none() {
    let server_ca = TestCa::new("server CA");
    let clients = TestCa::new("client CA");
    let required = handshake(
        &listener(ClientAuthMode::Required, &clients),
        &server_ca,
        None,
    )
    .await;
    assert!(
        required.is_err(),
        "a handshake without a certificate passed"
    );
    let optional = handshake(
        &listener(ClientAuthMode::Optional, &clients),
        &server_ca,
        None,
    )
    .await
    .expect("optional admits a client without a certificate");
    assert_eq!(verified_client_cert(Some(&optional)), None);
}

#[tokio::test]
async fn a_certificate_of_another_ca_is_refused_in_either_mode() {
    let server_ca = TestCa::new("server CA");
    let clients = TestCa::new("client CA");
    let stranger = TestCa::new("another CA").client(&[(DnType::CommonName, "mallory")]);
    for mode in [ClientAuthMode::Required, ClientAuthMode::Optional] {
        let result = handshake(&listener(mode, &clients), &server_ca, Some(&stranger)).await;
        assert!(result.is_err(), "{mode:?} took a certificate of another CA");
    }
}

#[test]
fn the_client_cert_headers_are_recognised_and_added_from_the_connection() {
    for name in [
        &X_CLIENT_CERT_VERIFY,
        &X_CLIENT_CERT_SUBJECT,
        &X_CLIENT_CERT_FINGERPRINT,
    ] {
        assert!(is_client_cert_header(name), "{name}");
    }
    for other in ["x-client-ip", "x-client-cert", "authorization"] {
        let name = HeaderName::from_static(other);
        assert!(!is_client_cert_header(&name), "{other}");
    }
    let mut without = HeaderMap::new();
    add_client_cert_headers(&mut without, false, None);
    assert!(without.is_empty(), "{without:?}");
    let mut none = HeaderMap::new();
    add_client_cert_headers(&mut none, true, None);
    assert_eq!(none.len(), 1);
    assert_eq!(none[&X_CLIENT_CERT_VERIFY], "NONE");
    let own = ClientCertHeaders {
        verify: "SUCCESS".parse().unwrap(),
        subject: Some("CN=alice".parse().unwrap()),
        fingerprint: Some("ab".parse().unwrap()),
    };
    let mut verified = HeaderMap::new();
    add_client_cert_headers(&mut verified, true, Some(&own));
    assert_eq!(verified[&X_CLIENT_CERT_VERIFY], "SUCCESS");
    assert_eq!(verified[&X_CLIENT_CERT_SUBJECT], "CN=alice");
    assert_eq!(verified[&X_CLIENT_CERT_FINGERPRINT], "ab");
    assert_eq!(verified.len(), 3);
}

#[test]
fn subjects_are_written_as_rfc_4514() {
    let ca = TestCa::new("CA");
    let subject = |pairs: &[(DnType, &str)]| {
        let issued = ca.client(pairs);
        ClientCertificate::from_der(issued.der.as_ref())
            .unwrap()
            .subject
    };
    assert_eq!(
        subject(&[
            (DnType::OrganizationalUnitName, "ops"),
            (DnType::CommonName, "#1 a+b ")
        ]),
        "CN=\\#1 a\\+b\\ ,OU=ops"
    );
    assert_eq!(subject(&[(DnType::CommonName, "Zoë")]), "CN=Zo\\C3\\AB");
    let value = HeaderValue::from_str(&subject(&[(DnType::CommonName, "Zoë <x@y>;")]));
    assert!(value.is_ok(), "subjects are header-safe");
}
