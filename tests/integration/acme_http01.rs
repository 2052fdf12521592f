//! ACME HTTP-01 against a real Pebble (default 5 % badNonce and 50 % authorization reuse left
//! on): issuance end to end with SNI, a restart that places no new order, renewal swapped in
//! while a client keeps its connection, and failures that keep the served certificate while the
//! retries back off.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::acme_env::{
    certs_report, servers_installed, wait_verified, ChallTestSrv, ChallengePort, Pebble,
};
use crate::backends::{closed_port, EchoBackend};
use crate::client::{exchange, tls_connect, Request, TlsOptions};
use crate::harness::{DaemonBuilder, DEFAULT_TIMEOUTS};

/// How long issuance may take in a test.
const ISSUE_TIMEOUT: Duration = Duration::from_secs(45);

fn sni(name: &str) -> TlsOptions {
    TlsOptions {
        sni: Some(name.to_string()),
        alpn: vec![b"http/1.1".to_vec()],
        version: None,
    }
}

fn require_servers() {
    assert!(
        servers_installed(),
        "pebble, pebble-challtestsrv, named, dig, openssl and curl are needed: run scripts/setup.sh"
    );
}

/// Waits (blocking, off the runtime) until NAME verifies against Pebble's issuing root.
async fn wait_issued(pebble: &Pebble, name: &str, https: std::net::SocketAddr) {
    let root = pebble.issuing_root();
    let name = name.to_string();
    tokio::task::spawn_blocking(move || wait_verified(&root, &name, https, ISSUE_TIMEOUT))
        .await
        .expect("join");
}

/// Accounts Pebble registered: each new one is logged once ("There are now N accounts in
/// memory"), while a request Pebble refused with badNonce is sent again and logged twice.
fn registered_accounts(pebble: &Pebble) -> usize {
    pebble
        .log()
        .lines()
        .filter(|l| l.contains("There are now") && l.contains("accounts in memory"))
        .count()
}

fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

/// A certificate for `names` valid from `start` to `end` seconds from now, written as a stored
/// ACME certificate `name` in `state_dir`; returns its leaf DER.
fn seed_stored(state_dir: &Path, name: &str, names: &[&str], start: i64, end: i64) -> Vec<u8> {
    let now = time::OffsetDateTime::now_utc();
    let mut params =
        rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .expect("params");
    params.not_before = now + time::Duration::seconds(start);
    params.not_after = now + time::Duration::seconds(end);
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = params.self_signed(&key).expect("sign");
    let dir = state_dir.join("certs").join(name);
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(dir.join("fullchain.pem"), cert.pem()).expect("chain");
    std::fs::write(dir.join("key.pem"), key.serialize_pem()).expect("key");
    cert.der().to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http01_certificate_is_issued_stored_and_selected_by_sni() {
    require_servers();
    let backend = EchoBackend::start("a").await;
    let dns = ChallTestSrv::start();
    let http01 = ChallengePort::open().await;
    let builder = DaemonBuilder::new();
    let pebble = Pebble::start(http01.port(), dns.dns);
    let daemon = builder
        .certificate("file", &["file.test"])
        .acme_certificate(
            "{ name: web, domains: [web.acme.test, www.acme.test], acme: { challenge: http-01 } }",
        )
        .route("{ name: any, upstream: a }")
        .upstream("a", &[backend.addr], DEFAULT_TIMEOUTS)
        .yaml(&pebble.acme_yaml(""))
        .start()
        .await;
    http01.forward_to(daemon.http);

    wait_issued(&pebble, "web.acme.test", daemon.https).await;
    wait_issued(&pebble, "www.acme.test", daemon.https).await;
    // SNI still picks the file certificate for its name.
    let (_, info) = tls_connect(daemon.https, &sni("file.test")).await;
    assert!(info.peer_cert.expect("cert") == daemon.cert("file").der);
    // The issued certificate is served with a working connection behind it.
    let (mut tls, _) = tls_connect(daemon.https, &sni("web.acme.test")).await;
    let response = exchange(&mut tls, &Request::get("web.acme.test", "/")).await;
    assert_eq!(response.status, 200);

    let state = daemon.config_path().parent().expect("dir").join("state");
    let cert_dir = state.join("certs/web");
    assert_eq!(mode(&cert_dir.join("key.pem")), 0o600);
    assert!(cert_dir.join("meta.json").is_file());
    let accounts: Vec<_> = std::fs::read_dir(state.join("acme/accounts"))
        .expect("accounts dir")
        .collect();
    assert_eq!(accounts.len(), 1);
    let account = accounts[0].as_ref().expect("entry").path();
    assert_eq!(mode(&account), 0o600);

    let report = certs_report(daemon.config_path());
    assert!(
        report.contains("web\n  names:        web.acme.test, www.acme.test"),
        "{report}"
    );
    assert!(
        report.contains("source:       acme https://127.0.0.1:"),
        "{report}"
    );
    assert!(report.contains("Pebble Intermediate"), "{report}");
    assert!(report.contains("source:       file"), "{report}");
    assert!(daemon.log().contains("certificate issued and now served"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_serves_the_stored_certificate_without_a_new_order() {
    require_servers();
    let state = tempfile::tempdir().expect("state");
    let dns = ChallTestSrv::start();
    let http01 = ChallengePort::open().await;
    let first = DaemonBuilder::new().state_dir(state.path());
    let pebble = Pebble::start(http01.port(), dns.dns);
    let cert = "{ name: keep, domains: [keep.acme.test], acme: { challenge: http-01 } }";
    let daemon = first
        .acme_certificate(cert)
        .yaml(&pebble.acme_yaml(""))
        .start()
        .await;
    http01.forward_to(daemon.http);
    wait_issued(&pebble, "keep.acme.test", daemon.https).await;
    let (_, info) = tls_connect(daemon.https, &sni("keep.acme.test")).await;
    let issued = info.peer_cert.expect("cert");
    let orders_before = pebble.log().matches("POST /order-plz").count();
    let accounts_before = registered_accounts(&pebble);
    assert_eq!(accounts_before, 1);
    drop(daemon);

    let daemon = DaemonBuilder::new()
        .state_dir(state.path())
        .acme_certificate(cert)
        .yaml(&pebble.acme_yaml(""))
        .start()
        .await;
    let (_, info) = tls_connect(daemon.https, &sni("keep.acme.test")).await;
    assert!(
        info.peer_cert.expect("cert") == issued,
        "a different certificate after restart"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let log = daemon.log();
    assert!(log.contains("serving the stored certificate"), "{log}");
    assert!(!log.contains("ordering a certificate"), "{log}");
    assert_eq!(
        pebble.log().matches("POST /order-plz").count(),
        orders_before
    );
    // The stored account is reused: no second registration.
    assert_eq!(registered_accounts(&pebble), accounts_before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewal_is_swapped_in_while_a_connection_stays_open() {
    require_servers();
    let backend = EchoBackend::start("a").await;
    let state = tempfile::tempdir().expect("state");
    // A 600 s certificate with 210 s left renews 10 s (minus up to 6 s jitter) from now.
    let old = seed_stored(state.path(), "renew", &["renew.acme.test"], -390, 210);
    let dns = ChallTestSrv::start();
    let http01 = ChallengePort::open().await;
    let builder = DaemonBuilder::new().state_dir(state.path());
    let pebble = Pebble::start(http01.port(), dns.dns);
    let daemon = builder
        .acme_certificate(
            "{ name: renew, domains: [renew.acme.test], acme: { challenge: http-01 } }",
        )
        .route("{ name: any, upstream: a }")
        .upstream("a", &[backend.addr], DEFAULT_TIMEOUTS)
        .yaml(&pebble.acme_yaml(""))
        .start()
        .await;
    http01.forward_to(daemon.http);
    let (mut held, info) = tls_connect(daemon.https, &sni("renew.acme.test")).await;
    assert!(
        info.peer_cert.expect("cert") == old,
        "the stored certificate is served first"
    );
    let response = exchange(&mut held, &Request::get("renew.acme.test", "/")).await;
    assert_eq!(response.status, 200);

    wait_issued(&pebble, "renew.acme.test", daemon.https).await;
    // The connection opened before the swap still works.
    let response = exchange(&mut held, &Request::get("renew.acme.test", "/again")).await;
    assert_eq!(response.status, 200);
    let (_, info) = tls_connect(daemon.https, &sni("renew.acme.test")).await;
    assert!(
        info.peer_cert.expect("cert") != old,
        "new connections get the renewed certificate"
    );
    assert!(daemon.log().contains("renewal=true"), "{}", daemon.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_directory_keeps_the_placeholder_and_backs_off() {
    let nowhere = closed_port();
    let daemon = DaemonBuilder::new()
        .acme_certificate("{ name: down, domains: [down.acme.test], acme: { challenge: http-01 } }")
        .yaml(&format!(
            "acme:\n  directory: https://{}/dir\n  retry_min: 1s\n  retry_max: 2s\n",
            nowhere.addr
        ))
        .start()
        .await;
    let started = Instant::now();
    let (_, info) = tls_connect(daemon.https, &sni("down.acme.test")).await;
    let placeholder = info.peer_cert.expect("a placeholder certificate is served");
    let (_, parsed) = x509_parser::parse_x509_certificate(&placeholder).expect("x509");
    assert_eq!(parsed.subject(), parsed.issuer(), "self-signed placeholder");
    assert!(parsed
        .issuer()
        .to_string()
        .contains("ferrogate placeholder"));

    // Attempts at ~0 s, ~1 s, ~3 s, ~5 s: the waits grow 1 s → 2 s (the configured cap).
    while started.elapsed() < Duration::from_secs(15) {
        if daemon.log().matches("certificate issuance failed").count() >= 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let log = daemon.log();
    assert!(log.contains("retry_in_secs=1"), "{log}");
    assert!(log.contains("retry_in_secs=2"), "{log}");
    let state = daemon.config_path().parent().expect("dir").join("state");
    let status: serde_json::Value = serde_json::from_slice(
        &std::fs::read(state.join("certs/down/status.json")).expect("status.json"),
    )
    .expect("json");
    assert!(
        status["attempts_failed"].as_u64().expect("count") >= 3,
        "{status}"
    );
    assert_eq!(status["serving"], "placeholder");
    assert!(status["last_error"]
        .as_str()
        .expect("error")
        .contains(&nowhere.addr.to_string()));
    let report = certs_report(daemon.config_path());
    assert!(report.contains("last error:   ACME directory"), "{report}");
    // Still up and serving.
    let (_, info) = tls_connect(daemon.https, &sni("down.acme.test")).await;
    assert!(info.peer_cert.expect("cert") == placeholder);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_challenge_keeps_the_old_certificate() {
    require_servers();
    let state = tempfile::tempdir().expect("state");
    // Due for renewal now (a third of its lifetime left is long gone), still valid for 200 s.
    let old = seed_stored(state.path(), "old", &["old.acme.test"], -1000, 200);
    let dns = ChallTestSrv::start();
    // Pebble validates on a port where nothing answers: every challenge fails.
    let nowhere = closed_port();
    let pebble = Pebble::start(nowhere.addr.port(), dns.dns);
    let daemon = DaemonBuilder::new()
        .state_dir(state.path())
        .acme_certificate("{ name: old, domains: [old.acme.test], acme: { challenge: http-01 } }")
        .yaml(&pebble.acme_yaml(""))
        .start()
        .await;
    let deadline = Instant::now() + Duration::from_secs(40);
    while daemon.log().matches("certificate issuance failed").count() < 2 {
        assert!(
            Instant::now() < deadline,
            "no failed attempts:\n{}",
            daemon.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (_, info) = tls_connect(daemon.https, &sni("old.acme.test")).await;
    assert!(
        info.peer_cert.expect("cert") == old,
        "the last good certificate must stay"
    );
    let log = daemon.log();
    assert!(log.contains("urn:ietf:params:acme:error"), "{log}");
}
