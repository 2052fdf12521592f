//! The account and the store: external account binding against a Pebble that requires it, an
//! EAB key that cannot work (retried only after the longest backoff), and a corrupt stored
//! certificate that is reported and issued again instead of stopping the daemon.

use std::time::{Duration, Instant};

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
async fn an_eab_key_that_cannot_work_waits_the_longest_backoff() {
    let secrets = tempfile::tempdir().expect("tempdir");
    let key_file = secrets.path().join("eab.key");
    std::fs::write(&key_file, "not base64url!\n").expect("key");
    // The key is decoded before the directory is asked: no CA is needed to fail.
    let nobody = crate::backends::closed_port();
    let daemon = DaemonBuilder::new()
        .acme_certificate("{ name: eab, domains: [eab.acme.test], acme: { challenge: http-01 } }")
        .yaml(&format!(
            "acme:\n  directory: https://{}/dir\n  retry_min: 1s\n  retry_max: 7s\n  eab: {{ kid: {EAB_KID}, hmac_key_file: {} }}\n",
            nobody.addr,
            key_file.display()
        ))
        .start()
        .await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while !daemon.log().contains("certificate issuance failed") {
        assert!(
            Instant::now() < deadline,
            "no failed attempt:\n{}",
            daemon.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let log = daemon.log();
    assert!(log.contains("retrying cannot fix it"), "{log}");
    assert!(log.contains("transient=false"), "{log}");
    assert!(log.contains("retry_in_secs=7"), "{log}");
    let state = daemon.config_path().parent().expect("dir").join("state");
    let status: serde_json::Value = serde_json::from_slice(
        &std::fs::read(state.join("certs/eab/status.json")).expect("status.json"),
    )
    .expect("json");
    let last_error = status["last_error"].as_str().expect("error");
    assert!(
        last_error.contains("the EAB HMAC key is not base64url"),
        "{status}"
    );
    assert!(last_error.contains("not transient"), "{status}");
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
