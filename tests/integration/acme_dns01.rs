//! ACME DNS-01 against a real Pebble: RFC 2136 updates with TSIG on a real bind9 (a wildcard and
//! its apex in one certificate, so two TXT values share one name; records gone afterwards; a
//! CNAME on `_acme-challenge` followed) and the exec hook driving pebble-challtestsrv.

use std::time::{Duration, Instant};

use crate::acme_env::{
    servers_installed, wait_verified, ChallTestSrv, ChallengePort, Named, Pebble,
};
use crate::harness::DaemonBuilder;

const ISSUE_TIMEOUT: Duration = Duration::from_secs(45);

async fn wait_issued(pebble: &Pebble, name: &str, https: std::net::SocketAddr) {
    let root = pebble.issuing_root();
    let name = name.to_string();
    tokio::task::spawn_blocking(move || wait_verified(&root, &name, https, ISSUE_TIMEOUT))
        .await
        .expect("join");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfc2136_issues_wildcard_and_apex_and_removes_the_records() {
    assert!(servers_installed(), "run scripts/setup.sh");
    let named = Named::start("example.test");
    let http01 = ChallengePort::open().await;
    let builder = DaemonBuilder::new();
    let pebble = Pebble::start(http01.port(), named.addr);
    let provider = format!(
        "  dns_providers:\n    bind: {{ type: rfc2136, server: {}, tsig_key_name: acme, tsig_algorithm: hmac-sha256, tsig_secret_file: {}, propagation_timeout: 20s }}\n",
        named.addr,
        named.secret_file.display()
    );
    let daemon = builder
        .acme_certificate("{ name: wild, domains: ['*.example.test', example.test], acme: { challenge: dns-01, dns_provider: bind } }")
        .acme_certificate("{ name: alias, domains: [alias.example.test], acme: { challenge: dns-01, dns_provider: bind } }")
        .yaml(&pebble.acme_yaml(&provider))
        .start()
        .await;
    http01.forward_to(daemon.http);
    wait_issued(&pebble, "anything.example.test", daemon.https).await;
    wait_issued(&pebble, "example.test", daemon.https).await;
    wait_issued(&pebble, "alias.example.test", daemon.https).await;
    let log = daemon.log();
    assert_eq!(
        log.matches("fqdn=_acme-challenge.example.test. identifier=")
            .count(),
        2,
        "both values published at _acme-challenge.example.test:\n{log}"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left = named.txt("_acme-challenge.example.test");
        if left.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "TXT records left behind: {left:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(log.matches("removed TXT record").count(), 3, "{log}");
    // The alias's record went where its CNAME points, and is gone too.
    assert!(
        log.contains("fqdn=_acme-challenge.delegated.example.test. identifier=alias.example.test"),
        "{log}"
    );
    assert!(named
        .txt("_acme-challenge.delegated.example.test")
        .is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_hook_publishes_through_challtestsrv() {
    assert!(servers_installed(), "run scripts/setup.sh");
    let dns = ChallTestSrv::start();
    let http01 = ChallengePort::open().await;
    let builder = DaemonBuilder::new();
    let pebble = Pebble::start(http01.port(), dns.dns);
    let hook_dir = tempfile::tempdir().expect("tempdir");
    let calls = hook_dir.path().join("calls.log");
    let hook = hook_dir.path().join("dns-hook");
    std::fs::write(
        &hook,
        format!(
            "#!/bin/sh\nset -e\necho \"$1 $2 $3\" >> {calls}\ncase \"$1\" in\n  present) curl --noproxy \"*\" -sSf -X POST -d \"{{\\\"host\\\":\\\"$2\\\",\\\"value\\\":\\\"$3\\\"}}\" http://{m}/set-txt ;;\n  cleanup) curl --noproxy \"*\" -sSf -X POST -d \"{{\\\"host\\\":\\\"$2\\\"}}\" http://{m}/clear-txt ;;\n  *) exit 2 ;;\nesac\n",
            calls = calls.display(),
            m = dns.management
        ),
    )
    .expect("hook");
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    let provider = format!(
        "  dns_providers:\n    hook: {{ type: exec, command: {}, nameservers: [{}], propagation_timeout: 20s }}\n",
        hook.display(),
        dns.dns
    );
    let daemon = builder
        .acme_certificate(
            "{ name: hooked, domains: [hook.acme.test], acme: { challenge: dns-01, dns_provider: hook } }",
        )
        .yaml(&pebble.acme_yaml(&provider))
        .start()
        .await;
    http01.forward_to(daemon.http);
    wait_issued(&pebble, "hook.acme.test", daemon.https).await;
    let calls = std::fs::read_to_string(&calls).expect("hook was called");
    let lines: Vec<&str> = calls.lines().collect();
    assert_eq!(lines.len(), 2, "{calls}");
    assert!(
        lines[0].starts_with("present _acme-challenge.hook.acme.test. "),
        "{calls}"
    );
    assert!(
        lines[1].starts_with("cleanup _acme-challenge.hook.acme.test. "),
        "{calls}"
    );
    // The same value is presented and cleaned up.
    assert_eq!(lines[0].split(' ').nth(2), lines[1].split(' ').nth(2));
}
