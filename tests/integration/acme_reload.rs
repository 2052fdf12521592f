//! `AcmeManager::apply` (prepare, then commit), the steps a config reload takes: a certificate added to the
//! configuration is issued and swapped into the SNI store without restart, and one removed stops
//! being served.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferrogate::acme::http01::ChallengeTokens;
use ferrogate::acme::{AcmeManager, AcmeReporting};
use ferrogate::tls::{CertIndex, CertStore};

use crate::acme_env::{servers_installed, ChallengePort, Named, Pebble};
use crate::backends::closed_port;

fn config(dir: &Path, acme: &str, certs: &str) -> ferrogate::config::Config {
    let yaml = format!(
        "state_dir: {state}\nlisteners:\n  https: {https}\ntls:\n  certificates:\n{certs}routes:\n  - {{ name: a, upstream: a }}\nupstreams:\n  a:\n    servers: [ {{ address: 127.0.0.1:9 }} ]\n{acme}",
        state = dir.join("state").display(),
        // Never bound: only the ACME manager reads this config.
        https = closed_port().addr,
    );
    let path = dir.join("ferrogate.yaml");
    ferrogate::config::load_str(&yaml, &path).unwrap_or_else(|e| panic!("{e}\n{yaml}"))
}

fn issuer(store: &CertStore, name: &str) -> String {
    let key = store.current().resolve(Some(name)).expect("a certificate");
    let (_, parsed) = x509_parser::parse_x509_certificate(key.cert[0].as_ref()).expect("x509");
    parsed.issuer().to_string()
}

#[test]
fn apply_issues_added_certificates_and_drops_removed_ones() {
    assert!(servers_installed(), "run scripts/setup.sh");
    let named = Named::start("example.test");
    // DNS-01 only: nothing answers where Pebble would validate HTTP-01.
    let nowhere = closed_port();
    let pebble = Pebble::start(nowhere.addr.port(), named.addr);
    let dir = tempfile::tempdir().expect("tempdir");
    let provider = format!(
        "  dns_providers:\n    bind: {{ type: rfc2136, server: {}, tsig_key_name: acme, tsig_secret_file: {}, propagation_timeout: 20s }}\n",
        named.addr,
        named.secret_file.display()
    );
    let acme = pebble.acme_yaml(&provider);
    let store = Arc::new(CertStore::new(CertIndex::default()));
    let reporting = AcmeReporting::standalone().expect("reporting");
    let manager = AcmeManager::new(
        store.clone(),
        Arc::new(ChallengeTokens::default()),
        reporting,
    )
    .expect("manager");

    manager
        .apply(&config(dir.path(), &acme, ""), None)
        .expect("apply");
    let fallback = issuer(&store, "new.example.test");

    let added = "    - { name: new, domains: [new.example.test], acme: { challenge: dns-01, dns_provider: bind } }\n";
    manager
        .apply(&config(dir.path(), &acme, added), None)
        .expect("apply");
    // A per-name placeholder at once, then Pebble's certificate.
    assert!(issuer(&store, "new.example.test").contains("ferrogate placeholder"));
    let deadline = Instant::now() + Duration::from_secs(45);
    while !issuer(&store, "new.example.test").contains("Pebble") {
        assert!(Instant::now() < deadline, "not issued after the reload");
        std::thread::sleep(Duration::from_millis(100));
    }
    let status = manager.status().get("new").expect("status");
    assert_eq!(status.attempts_succeeded, 1);
    assert!(status.not_after.is_some());

    // Applying the same config again changes nothing (no new order).
    manager
        .apply(&config(dir.path(), &acme, added), None)
        .expect("apply");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        manager
            .status()
            .get("new")
            .expect("status")
            .attempts_succeeded,
        1
    );

    manager
        .apply(&config(dir.path(), &acme, ""), None)
        .expect("apply");
    assert_eq!(issuer(&store, "new.example.test"), fallback);
    assert!(manager.status().get("new").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_added_by_a_reload_is_issued_without_restart() {
    assert!(servers_installed(), "run scripts/setup.sh");
    let dns = crate::acme_env::ChallTestSrv::start();
    let http01 = ChallengePort::open().await;
    let builder = crate::harness::DaemonBuilder::new();
    let pebble = Pebble::start(http01.port(), dns.dns);
    let mut daemon = builder.yaml(&pebble.acme_yaml("")).start().await;
    http01.forward_to(daemon.http);
    let pid = daemon.pid();
    let added = daemon.initial_yaml().replacen(
        "routes:\n",
        "    - { name: late, domains: [late.acme.test], acme: { challenge: http-01 } }\nroutes:\n",
        1,
    );
    daemon.replace_config(&added);
    daemon.signal("HUP");
    let root = pebble.issuing_root();
    let https = daemon.https;
    tokio::task::spawn_blocking(move || {
        crate::acme_env::wait_verified(&root, "late.acme.test", https, Duration::from_secs(45))
    })
    .await
    .expect("join");
    assert_eq!(daemon.pid(), pid);
    assert!(
        daemon.log().contains("configuration reloaded"),
        "{}",
        daemon.log()
    );
}
