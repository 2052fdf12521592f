//! Tests of TLS with peers: `client_auth` on listeners and `tls` on upstreams, with their files
//! written to a temporary directory.

use std::path::Path;

use super::tests::MINIMAL;
use crate::config::error::ConfigErrors;
use crate::config::load_str;
use crate::config::model::{ClientAuthMode, Config, ServerVerification, UpstreamAlpn};
use crate::test_pki::TestCa;

/// Loads `source` as the file `ferrogate.yaml` in `dir`.
fn load(dir: &Path, source: &str) -> Result<Config, ConfigErrors> {
    load_str(source, &dir.join("ferrogate.yaml"))
}

fn one(found: &ConfigErrors, key: &str, needle: &str) {
    assert_eq!(found.len(), 1, "expected one error, got:\n{found}");
    assert_eq!(found.0[0].key, key, "{found}");
    assert!(found.0[0].message.contains(needle), "{found}");
}

/// MINIMAL with the https listener given `client_auth`.
fn https_with(client_auth: &str) -> String {
    MINIMAL.replace(
        "  https: 127.0.0.1:8443\n",
        &format!("  https: {{ address: 127.0.0.1:8443, client_auth: {client_auth} }}\n"),
    )
}

/// MINIMAL with the upstream given `tls`.
fn upstream_with(tls: &str) -> String {
    MINIMAL.replace(
        "    servers: [ { address: 127.0.0.1:3000 } ]\n",
        &format!("    servers: [ {{ address: 127.0.0.1:3000 }} ]\n    tls: {tls}\n"),
    )
}

#[test]
fn client_auth_reads_its_ca_bundle_on_tls_listeners_only() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("clients");
    std::fs::write(dir.path().join("clients.pem"), ca.pem()).unwrap();
    let config = load(dir.path(), &https_with("{ ca: clients.pem }")).unwrap();
    let auth = config.listeners[0]
        .client_auth
        .clone()
        .expect("client_auth");
    assert_eq!(auth.mode, ClientAuthMode::Required);
    assert_eq!(auth.ca.certificates.len(), 1);
    let config = load(
        dir.path(),
        &https_with("{ ca: clients.pem, mode: optional }"),
    )
    .unwrap();
    assert_eq!(
        config.listeners[0].client_auth.as_ref().map(|a| a.mode),
        Some(ClientAuthMode::Optional)
    );
    // A route may then ask for a certificate.
    let source = https_with("{ ca: clients.pem }").replace(
        "{ name: app, upstream: app }",
        "{ name: app, upstream: app, match: { client_cert: required } }",
    );
    assert!(
        load(dir.path(), &source).unwrap().routes[0]
            .rules
            .matcher
            .as_ref()
            .unwrap()
            .client_cert
    );

    let plain =
        "listeners:\n  http: { address: 127.0.0.1:8080, client_auth: { ca: clients.pem } }\n";
    one(
        &load(dir.path(), plain).unwrap_err(),
        "listeners.http.client_auth",
        "need a TLS listener",
    );
    let extra = "listeners:\n  extra: [ { name: x, address: 127.0.0.1:8080, client_auth: { ca: clients.pem } } ]\n";
    one(
        &load(dir.path(), extra).unwrap_err(),
        "listeners.extra[0].client_auth",
        "need a TLS listener",
    );
    let extra_tls = "listeners:\n  extra: [ { name: x, address: 127.0.0.1:8080, tls: true, client_auth: { ca: clients.pem } } ]\n";
    assert!(load(dir.path(), extra_tls).unwrap().listeners[0]
        .client_auth
        .is_some());
    one(
        &load(
            dir.path(),
            &https_with("{ ca: clients.pem, mode: sometimes }"),
        )
        .unwrap_err(),
        "listeners.https.client_auth.mode",
        "unknown variant",
    );
}

#[test]
fn an_unreadable_or_empty_ca_bundle_is_an_error_at_its_key() {
    let dir = tempfile::tempdir().unwrap();
    one(
        &load(dir.path(), &https_with("{ ca: missing.pem }")).unwrap_err(),
        "listeners.https.client_auth.ca",
        "cannot read",
    );
    std::fs::write(dir.path().join("empty.pem"), "# nothing\n").unwrap();
    one(
        &load(dir.path(), &https_with("{ ca: empty.pem }")).unwrap_err(),
        "listeners.https.client_auth.ca",
        "holds no PEM certificate",
    );
}

#[test]
fn upstream_tls_defaults_to_the_system_roots_and_http1() {
    let dir = tempfile::tempdir().unwrap();
    let config = load(dir.path(), &upstream_with("{}")).unwrap();
    let tls = config.upstreams["app"].tls.clone().expect("tls");
    assert!(
        matches!(&tls.verification, ServerVerification::SystemRoots(roots) if !roots.is_empty())
    );
    assert_eq!(
        (tls.sni, tls.alpn, tls.identity),
        (None, UpstreamAlpn::Http1, None)
    );
    let config = load(
        dir.path(),
        &upstream_with("{ verify: false, sni: api.internal, alpn: [http/1.1] }"),
    )
    .unwrap();
    let tls = config.upstreams["app"].tls.clone().expect("tls");
    assert_eq!(tls.verification, ServerVerification::Off);
    assert_eq!(tls.sni.as_deref(), Some("api.internal"));
    assert_eq!(tls.alpn, UpstreamAlpn::Http1);
    // Servers are spoken to over HTTP/1.1: offering h2 is refused at its position.
    for offer in ["[h2, http/1.1]", "[h2]", "[http/1.1, h2]"] {
        let errors =
            load(dir.path(), &upstream_with(&format!("{{ alpn: {offer} }}"))).expect_err(offer);
        one(&errors, "upstreams.app.tls.alpn", "speaks HTTP/1.1");
    }
    assert!(config.upstreams["app"].tls.is_some());
}

#[test]
fn upstream_tls_reads_its_ca_and_client_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("upstream CA");
    let client = ca.client(&[(rcgen::DnType::CommonName, "edge")]);
    let other = ca.client(&[(rcgen::DnType::CommonName, "other")]);
    std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
    std::fs::write(dir.path().join("c.pem"), &client.cert_pem).unwrap();
    std::fs::write(dir.path().join("c.key"), &client.key_pem).unwrap();
    std::fs::write(dir.path().join("other.key"), &other.key_pem).unwrap();
    let config = load(
        dir.path(),
        &upstream_with("{ ca: ca.pem, client_cert: c.pem, client_key: c.key }"),
    )
    .unwrap();
    let tls = config.upstreams["app"].tls.clone().expect("tls");
    assert!(
        matches!(&tls.verification, ServerVerification::Bundle(b) if b.certificates.len() == 1)
    );
    let identity = tls.identity.expect("identity");
    assert_eq!(identity.chain[0], client.der);

    let found = load(
        dir.path(),
        &upstream_with("{ client_cert: c.pem, client_key: other.key }"),
    )
    .unwrap_err();
    one(&found, "upstreams.app.tls.client_key", "does not match");
    let found = load(dir.path(), &upstream_with("{ ca: nope.pem }")).unwrap_err();
    one(&found, "upstreams.app.tls.ca", "cannot read");
}

#[test]
fn upstream_tls_errors_point_at_their_key() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "{ verify: false, ca: ca.pem }",
            "upstreams.app.tls.ca",
            "no effect with `verify: false`",
        ),
        (
            "{ client_cert: c.pem }",
            "upstreams.app.tls.client_cert",
            "needs `client_key`",
        ),
        (
            "{ client_key: c.key }",
            "upstreams.app.tls.client_key",
            "needs `client_cert`",
        ),
        (
            "{ alpn: [spdy] }",
            "upstreams.app.tls.alpn",
            "expected `[http/1.1]`",
        ),
        (
            "{ sni: 'not a name' }",
            "upstreams.app.tls.sni",
            "not a DNS name",
        ),
        ("{ verfy: false }", "upstreams.app.tls.verfy", "unknown key"),
    ];
    for (tls, key, needle) in cases {
        one(
            &load(dir.path(), &upstream_with(tls)).unwrap_err(),
            key,
            needle,
        );
    }
}
