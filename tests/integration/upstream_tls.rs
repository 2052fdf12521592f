//! An upstream with `tls`: the health checker and the node scraper reach real https servers
//! with the upstream's CA, and a server whose certificate another CA signed fails its checks.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

use crate::backends::read_request;
use crate::balance_support::{lb_builder, server_of, servers_yaml, wait_status};

/// Longest wait for the status to reach a state.
const LIMIT: Duration = Duration::from_secs(20);

/// A CA of its own; writes its PEM to `dir/NAME.pem`.
struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    fn new(dir: &Path, name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let issuer =
            CertifiedIssuer::self_signed(params, KeyPair::generate().expect("key")).expect("CA");
        std::fs::write(dir.join(format!("{name}.pem")), issuer.pem()).expect("write CA");
        Self { issuer }
    }

    /// A server certificate for 127.0.0.1 and localhost.
    fn server(&self) -> (CertificateDer<'static>, PrivateKeyDer<'static>) {
        let params = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .expect("params");
        let key = KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &self.issuer).expect("sign");
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        (cert.der().clone(), key)
    }
}

/// An https server answering `/health`, `/v1/models` and `/metrics` like a vLLM node; it logs
/// every path asked over a completed handshake.
struct HttpsNode {
    addr: SocketAddr,
    asked: Arc<Mutex<Vec<String>>>,
}

impl HttpsNode {
    async fn start(ca: &Ca) -> Self {
        let (cert, key) = ca.server();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .expect("server config");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let asked = Arc::new(Mutex::new(Vec::new()));
        let log = asked.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let (acceptor, log) = (acceptor.clone(), log.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(socket).await else {
                        return;
                    };
                    let mut reader = BufReader::new(tls);
                    let Ok(Some(request)) = read_request(&mut reader).await else {
                        return;
                    };
                    log.lock().expect("log").push(request.target.clone());
                    let body = match request.target.as_str() {
                        "/v1/models" => r#"{"object":"list","data":[{"id":"tls-model","object":"model"}]}"#.to_string(),
                        "/metrics" => "vllm:num_requests_running 1.0\nvllm:num_requests_waiting 0.0\nvllm:kv_cache_usage_perc 0.25\n".to_string(),
                        _ => "ok".to_string(),
                    };
                    let reply = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let mut tls = reader.into_inner();
                    let _ = tls.write_all(reply.as_bytes()).await;
                    let _ = tls.shutdown().await;
                });
            }
        });
        Self { addr, asked }
    }

    fn asked(&self, path: &str) -> usize {
        self.asked
            .lock()
            .expect("log")
            .iter()
            .filter(|p| *p == path)
            .count()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_checks_use_the_upstreams_ca_and_fail_on_another() {
    let dir = tempfile::tempdir().expect("tempdir");
    let trusted = Ca::new(dir.path(), "trusted");
    let stranger = Ca::new(dir.path(), "stranger");
    let good = HttpsNode::start(&trusted).await;
    let bad = HttpsNode::start(&stranger).await;
    let ca = dir.path().join("trusted.pem");
    let health = "    health: { path: /health, interval: 100ms, timeout: 1s, rise: 1, fall: 1 }\n";
    let d = lb_builder()
        .upstream_yaml(
            "app",
            &format!(
                "{}{health}    tls: {{ ca: {} }}\n",
                servers_yaml(&[(good.addr, ""), (bad.addr, "")]),
                ca.display()
            ),
        )
        .start()
        .await;
    wait_status(&d, LIMIT, "the trusted server checked over TLS", |s| {
        server_of(s, "app", good.addr)["checks"].as_u64() >= Some(2)
            && server_of(s, "app", good.addr)["state"] == "up"
    })
    .await;
    assert!(
        good.asked("/health") >= 2,
        "checks reached the server over TLS"
    );
    wait_status(&d, LIMIT, "the server of another CA down", |s| {
        server_of(s, "app", bad.addr)["state"] == "down"
    })
    .await;
    assert_eq!(
        bad.asked("/health"),
        0,
        "no request without a verified handshake"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scraper_reads_models_and_metrics_over_tls() {
    let dir = tempfile::tempdir().expect("tempdir");
    let trusted = Ca::new(dir.path(), "trusted");
    let node = HttpsNode::start(&trusted).await;
    let ca = dir.path().join("trusted.pem");
    let d = lb_builder()
        .upstream_yaml(
            "app",
            &format!(
                "{}    balance: metrics\n    inference: {{ engine: vllm, models: discover, refresh: 100ms }}\n    tls: {{ ca: {} }}\n",
                servers_yaml(&[(node.addr, "")]),
                ca.display()
            ),
        )
        .start()
        .await;
    let s = wait_status(&d, LIMIT, "the models read over TLS", |s| {
        server_of(s, "app", node.addr)["models"]
            .as_array()
            .is_some_and(|m| m.iter().any(|m| m == "tls-model"))
    })
    .await;
    assert!(node.asked("/metrics") >= 1, "{s}");
}
