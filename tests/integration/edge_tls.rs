//! TLS at both ends through the real daemon: https upstreams verified with their own CA (502
//! with a clear log line for another CA or a wrong name, never a downgrade), a client
//! certificate shown to a backend that requires one, and listeners with `client_auth` that
//! refuse or admit clients and forward the verified identity (the client's own copies of those
//! headers never pass).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};

use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

use crate::backends::{read_request, RecordedRequest};
use crate::client::{client_with_identity, http_request, try_tls_request, Request};
use crate::harness::DaemonBuilder;
use crate::test_pki::{fingerprint, TestCa};

/// An HTTP/1.1 echo server over TLS; with `clients` it requires a client certificate of that
/// CA. It answers `backend: NAME` and whether a client certificate came.
struct HttpsEcho {
    addr: SocketAddr,
    log: Arc<Mutex<Vec<RecordedRequest>>>,
}

impl HttpsEcho {
    async fn start(dir: &Path, name: &str, ca: &TestCa, clients: Option<&TestCa>) -> Self {
        let issued = ca.server(dir, &format!("{name}-server"));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .expect("versions");
        let builder = match clients {
            Some(clients) => {
                let mut roots = RootCertStore::empty();
                let pem = std::fs::read(&clients.pem).expect("client CA");
                for cert in rustls_pemfile_certs(&pem) {
                    roots.add(cert).expect("client CA certificate");
                }
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                        .build()
                        .expect("verifier");
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let (chain, key) = issued.identity();
        let config = builder.with_single_cert(chain, key).expect("server config");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (name, recorded) = (name.to_string(), log.clone());
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let (acceptor, log, name) = (acceptor.clone(), recorded.clone(), name.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(socket).await else {
                        return;
                    };
                    let certified = tls.get_ref().1.peer_certificates().is_some();
                    let mut reader = BufReader::new(tls);
                    while let Ok(Some(request)) = read_request(&mut reader).await {
                        log.lock().expect("log").push(request);
                        let body = format!("backend: {name}\nclient-cert: {certified}\n");
                        let reply = format!(
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nX-Backend: {name}\r\n\r\n{body}",
                            body.len()
                        );
                        let stream = reader.get_mut();
                        if stream.write_all(reply.as_bytes()).await.is_err() {
                            return;
                        }
                        let _ = stream.flush().await;
                    }
                });
            }
        });
        Self { addr, log }
    }

    fn count(&self) -> usize {
        self.log.lock().expect("log").len()
    }

    fn last(&self) -> RecordedRequest {
        self.log
            .lock()
            .expect("log")
            .last()
            .cloned()
            .expect("a request reached the backend")
    }
}

/// The certificates of a PEM file.
fn rustls_pemfile_certs(pem: &[u8]) -> Vec<rustls_pki_types::CertificateDer<'static>> {
    use rustls_pki_types::pem::PemObject;
    rustls_pki_types::CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .expect("PEM certificates")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_upstreams_are_verified_and_never_downgraded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let dir = dir.path();
    let trusted = TestCa::new(dir, "trusted");
    let stranger = TestCa::new(dir, "stranger");
    let clients = TestCa::new(dir, "clients");
    let plain = HttpsEcho::start(dir, "plain", &trusted, None).await;
    let foreign = HttpsEcho::start(dir, "foreign", &stranger, None).await;
    let strict = HttpsEcho::start(dir, "strict", &trusted, Some(&clients)).await;
    let ours = clients.client(dir, "ferrogate-client", "ferrogate", "Edge");
    let upstream = |server: SocketAddr, tls: String| {
        format!("    servers: [ {{ address: {server} }} ]\n    tls: {tls}\n")
    };
    let ca = trusted.pem.display().to_string();
    let identity = format!(
        "client_cert: {}, client_key: {}",
        ours.cert_path.display(),
        ours.key_path.display()
    );
    let d = DaemonBuilder::new()
        .extra_listener("edge", false)
        .upstream_yaml("good", &upstream(plain.addr, format!("{{ ca: {ca} }}")))
        .upstream_yaml("other-ca", &upstream(foreign.addr, format!("{{ ca: {ca} }}")))
        .upstream_yaml(
            "wrong-name",
            &upstream(plain.addr, format!("{{ ca: {ca}, sni: api.example.com }}")),
        )
        .upstream_yaml(
            "unverified",
            &upstream(foreign.addr, "{ verify: false }".to_string()),
        )
        .upstream_yaml(
            "mtls",
            &upstream(strict.addr, format!("{{ ca: {ca}, {identity} }}")),
        )
        .upstream_yaml(
            "mtls-anonymous",
            &upstream(strict.addr, format!("{{ ca: {ca} }}")),
        )
        .route("{ name: good, hosts: [good.test], listener: edge, upstream: good }")
        .route("{ name: other-ca, hosts: [other-ca.test], listener: edge, upstream: other-ca }")
        .route("{ name: wrong-name, hosts: [wrong-name.test], listener: edge, upstream: wrong-name }")
        .route("{ name: unverified, hosts: [unverified.test], listener: edge, upstream: unverified }")
        .route("{ name: mtls, hosts: [mtls.test], listener: edge, upstream: mtls }")
        .route("{ name: anonymous, hosts: [anonymous.test], listener: edge, upstream: mtls-anonymous }")
        .start()
        .await;
    let edge = d.extra("edge");
    let get = |host: &str| Request::get(host, "/v1/models");

    // Twice: the second request may ride the pooled TLS connection.
    for _ in 0..2 {
        let r = http_request(edge, &get("good.test")).await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert!(r.text().starts_with("backend: plain\n"));
    }
    assert_eq!(plain.last().header("host"), Some("good.test"));

    let r = http_request(edge, &get("other-ca.test")).await;
    assert_eq!(r.status, 502, "a certificate of another CA: {}", r.text());
    let r = http_request(edge, &get("wrong-name.test")).await;
    assert_eq!(r.status, 502, "a name the certificate does not hold");
    assert_eq!(
        foreign.count(),
        0,
        "nothing sent over an unverified handshake"
    );
    let log = d.log();
    assert!(
        log.contains("TLS to the server failed")
            && log.contains("upstream=\"other-ca\"")
            && log.contains("UnknownIssuer"),
        "{log}"
    );
    assert!(log.contains("upstream=\"wrong-name\""), "{log}");

    let r = http_request(edge, &get("unverified.test")).await;
    assert_eq!(r.status, 200, "verify: false takes any certificate");
    assert!(log.contains("tls.verify is false"), "{log}");

    let r = http_request(edge, &get("mtls.test")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("client-cert: true"), "{}", r.text());
    let before = strict.count();
    let r = http_request(edge, &get("anonymous.test")).await;
    assert_eq!(r.status, 502, "the backend wants a client certificate");
    assert_eq!(strict.count(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listeners_with_client_auth_refuse_or_forward_the_identity() {
    let dir = tempfile::tempdir().expect("tempdir");
    let dir = dir.path();
    let clients = TestCa::new(dir, "clients");
    let stranger = TestCa::new(dir, "stranger");
    let alice = clients.client(dir, "alice", "alice", "Example, Inc.");
    let mallory = stranger.client(dir, "mallory", "mallory", "Elsewhere");
    let backend = crate::backends::EchoBackend::start("app").await;
    let admin = crate::backends::EchoBackend::start("admin").await;
    let auth = |mode: &str| {
        format!(
            "client_auth: {{ ca: {}, mode: {mode} }}",
            clients.pem.display()
        )
    };
    let d = DaemonBuilder::new()
        .https_listener_with(&auth("required"))
        .extra_listener_with("optional", true, &auth("optional"))
        .upstream("app", &[backend.addr], "{ connect: 2s, read: 5s }")
        .upstream("admin", &[admin.addr], "{ connect: 2s, read: 5s }")
        .route("{ name: strict, hosts: [localhost], listener: https, upstream: app }")
        .route("{ name: certified, hosts: [localhost], path_prefix: /admin/, listener: optional, upstream: admin, match: { client_cert: required } }")
        .route("{ name: open, hosts: [localhost], listener: optional, upstream: app }")
        .start()
        .await;
    let forged = |target: &str| {
        Request::get("localhost", target)
            .header("X-Client-Cert-Verify", "SUCCESS")
            .header("X-Client-Cert-Subject", "CN=root")
            .header("X-Client-Cert-Fingerprint", "00")
    };
    let with_alice = client_with_identity(Some(alice.identity()));
    let anonymous = client_with_identity(None);
    let with_mallory = client_with_identity(Some(mallory.identity()));

    // required: no certificate, or one of another CA, never gets an answer.
    for (who, config) in [("anonymous", &anonymous), ("mallory", &with_mallory)] {
        let result = try_tls_request(d.https, config, &forged("/")).await;
        assert!(
            result.is_err(),
            "{who} was answered: {:?}",
            result.map(|r| r.status)
        );
    }
    assert_eq!(backend.count(), 0);

    let r = try_tls_request(d.https, &with_alice, &forged("/"))
        .await
        .expect("alice is answered");
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = backend.last();
    assert_eq!(seen.header("x-client-cert-verify"), Some("SUCCESS"));
    assert_eq!(
        seen.header("x-client-cert-subject"),
        Some("O=Example\\, Inc.,CN=alice")
    );
    let expected = fingerprint(alice.der.as_ref());
    assert_eq!(
        seen.header("x-client-cert-fingerprint"),
        Some(expected.as_str())
    );

    // optional: a client without a certificate is served as NONE, and a route that requires
    // one is skipped for it.
    let optional = d.extra("optional");
    let r = try_tls_request(optional, &anonymous, &forged("/admin/x"))
        .await
        .expect("an anonymous client is answered");
    assert_eq!(
        r.header("x-backend"),
        Some("app"),
        "the certified route was skipped"
    );
    let seen = backend.last();
    assert_eq!(seen.header("x-client-cert-verify"), Some("NONE"));
    assert_eq!(
        seen.header("x-client-cert-subject"),
        None,
        "the forged copy is gone"
    );
    assert_eq!(seen.header("x-client-cert-fingerprint"), None);
    let r = try_tls_request(optional, &with_alice, &forged("/admin/x"))
        .await
        .expect("alice is answered");
    assert_eq!(r.header("x-backend"), Some("admin"), "{}", r.text());
    assert_eq!(
        admin.last().header("x-client-cert-subject"),
        Some("O=Example\\, Inc.,CN=alice")
    );
    // A certificate of another CA is refused even where one is optional.
    let result = try_tls_request(optional, &with_mallory, &forged("/")).await;
    assert!(
        result.is_err(),
        "mallory was answered on the optional listener"
    );
}
