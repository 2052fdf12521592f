//! The account and the store: external account binding against a Pebble that requires it, and a
//! corrupt stored certificate that is reported and issued again instead of stopping the daemon.

use std::time::Duration;

use crate::acme_env::{servers_installed, wait_verified, ChallTestSrv, ChallengePort, Pebble};
use crate::harness::DaemonBuilder;

const EAB_KID: &str = "kid-1";
/// Base64url, as CAs hand EAB keys out (Pebble's example key).
const EAB_KEY: &str = "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W";

async fn wait_issued(pebble: &Pebble, name: &str, https: std::net::SocketAddr) {
    let root = pebble.issuing_root();
    let name = name.to_string();
    tokio::task::spawn_blocking(move || {
        wait_verified(&root, &name, https, Duration::from_secs(45))
    })
    .await
    .expect("join");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_account_binding_registers_the_account() {
    assert!(servers_installed(), "run scripts/setup.sh");
    let dns = ChallTestSrv::start();
    let http01 = ChallengePort::open().await;
    let builder = DaemonBuilder::new();
    let pebble = Pebble::start_with(http01.port(), dns.dns, Some((EAB_KID, EAB_KEY)));
    let secrets = tempfile::tempdir().expect("tempdir");
    let key_file = secrets.path().join("eab.key");
    std::fs::write(&key_file, format!("{EAB_KEY}\n")).expect("key");
    let eab = format!(
        "  eab: {{ kid: {EAB_KID}, hmac_key_file: {} }}\n",
        key_file.display()
    );
    let daemon = builder
        .acme_certificate("{ name: eab, domains: [eab.acme.test], acme: { challenge: http-01 } }")
        .yaml(&pebble.acme_yaml(&eab))
        .start()
        .await;
    http01.forward_to(daemon.http);
    wait_issued(&pebble, "eab.acme.test", daemon.https).await;
    assert!(!daemon.log().contains(EAB_KEY));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_stored_certificate_is_reported_and_issued_again() {
    assert!(servers_installed(), "run scripts/setup.sh");
    let state = tempfile::tempdir().expect("state");
    let dir = state.path().join("certs/broken");
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(
        dir.join("fullchain.pem"),
        "-----BEGIN CERTIFICATE-----\nnot base64\n",
    )
    .expect("chain");
    std::fs::write(dir.join("key.pem"), "garbage").expect("key");
    let dns = ChallTestSrv::start();
    let http01 = ChallengePort::open().await;
    let builder = DaemonBuilder::new().state_dir(state.path());
    let pebble = Pebble::start(http01.port(), dns.dns);
    let daemon = builder
        .acme_certificate(
            "{ name: broken, domains: [broken.acme.test], acme: { challenge: http-01 } }",
        )
        .yaml(&pebble.acme_yaml(""))
        .start()
        .await;
    http01.forward_to(daemon.http);
    wait_issued(&pebble, "broken.acme.test", daemon.https).await;
    let log = daemon.log();
    assert!(
        log.contains("stored certificate is unusable; issuing a new one"),
        "{log}"
    );
    // The store now holds the issued certificate.
    let chain = std::fs::read_to_string(dir.join("fullchain.pem")).expect("chain");
    assert!(chain.matches("BEGIN CERTIFICATE").count() >= 2, "{chain}");
}
