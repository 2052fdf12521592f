//! Tests of the look-ups: certificate, key, digest, users, secret and CA files read and checked,
//! host names resolved, defaults asked of the system, each failure at the key that named it, and
//! together with the validation errors of the same file.

use std::path::Path;

use crate::config::load_str;
use crate::config::model::{DnsProviderKind, Secret};
use crate::config::validate::tests::{errors, ok, one_error, MINIMAL};

/// MINIMAL with its one route given `extra` keys.
fn route_with(extra: &str) -> String {
    MINIMAL.replace(
        "  - { name: app, upstream: app }\n",
        &format!("  - {{ name: app, upstream: app, {extra} }}\n"),
    )
}

/// A self-signed certificate and key written to `dir`, named `name.pem` and `name.key`.
fn write_pair(dir: &Path, name: &str, names: &[&str]) {
    let pair =
        rcgen::generate_simple_self_signed(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .unwrap();
    std::fs::write(dir.join(format!("{name}.pem")), pair.cert.pem()).unwrap();
    std::fs::write(
        dir.join(format!("{name}.key")),
        pair.signing_key.serialize_pem(),
    )
    .unwrap();
}

fn with_certificates(
    dir: &Path,
    certificates: &str,
) -> Result<crate::config::Config, crate::config::ConfigErrors> {
    let source = format!("{MINIMAL}tls:\n  certificates:\n{certificates}");
    load_str(&source, &dir.join("ferrogate.yaml"))
}

#[test]
fn file_certificates_are_loaded_relative_to_the_config() {
    let dir = tempfile::tempdir().unwrap();
    write_pair(dir.path(), "site", &["Site.example.com", "*.example.org"]);
    let config = with_certificates(
        dir.path(),
        "    - { name: site, cert: site.pem, key: site.key }\n",
    )
    .unwrap();
    let certificate = &config.tls.certificates[0];
    assert_eq!(certificate.name, "site");
    assert_eq!(certificate.cert_path, dir.path().join("site.pem"));
    assert_eq!(certificate.dns_names, ["site.example.com", "*.example.org"]);
    assert!(certificate.not_after > 1_700_000_000);
    assert_eq!(certificate.key.cert.len(), 1);
}

#[test]
fn a_certificate_without_san_falls_back_to_its_common_name() {
    let dir = tempfile::tempdir().unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "CN.example.com");
    let cert = params.self_signed(&key).unwrap();
    std::fs::write(dir.path().join("cn.pem"), cert.pem()).unwrap();
    std::fs::write(dir.path().join("cn.key"), key.serialize_pem()).unwrap();
    let config = with_certificates(
        dir.path(),
        "    - { name: cn, cert: cn.pem, key: cn.key }\n",
    )
    .unwrap();
    assert_eq!(config.tls.certificates[0].dns_names, ["cn.example.com"]);
}

#[test]
fn certificate_file_errors_point_at_the_file_key() {
    let dir = tempfile::tempdir().unwrap();
    write_pair(dir.path(), "one", &["one.example.com"]);
    write_pair(dir.path(), "two", &["two.example.com"]);
    std::fs::write(dir.path().join("garbage.pem"), "not pem at all").unwrap();
    let found = with_certificates(
        dir.path(),
        "    - { name: a, cert: missing.pem, key: missing.key }\n    - { name: b, cert: one.pem, key: two.key }\n    - { name: c, cert: garbage.pem, key: one.pem }\n    - { name: a, cert: one.pem }\n    - { name: e }\n    - { name: f, key: one.key, cert: one.pem, domains: [x.com] }\n",
    )
    .unwrap_err();
    let summary: Vec<(&str, &str)> = found
        .iter()
        .map(|e| (e.key.as_str(), e.message.as_str()))
        .collect();
    let expect = [
        ("tls.certificates[0].cert", "cannot read certificate file"),
        ("tls.certificates[0].key", "cannot read key file"),
        ("tls.certificates[1].key", "does not match"),
        ("tls.certificates[2].cert", "no CERTIFICATE found"),
        ("tls.certificates[2].key", "no PRIVATE KEY found"),
        ("tls.certificates[3].name", "duplicate certificate name `a`"),
        ("tls.certificates[3].cert", "`cert` needs `key`"),
        ("tls.certificates[4]", "needs `cert` and `key`"),
        ("tls.certificates[5].domains", "goes with `acme`"),
    ];
    assert_eq!(summary.len(), expect.len(), "{found}");
    for ((key, message), (want_key, want)) in summary.iter().zip(expect) {
        assert_eq!(*key, want_key, "{found}");
        assert!(message.contains(want), "{found}");
    }
}

#[test]
fn api_keys_read_digest_files() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    let digest = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
    std::fs::write(&keys, format!("{digest}\n")).unwrap();
    let upstream = dir.path().join("up.key");
    std::fs::write(&upstream, "sk-up\n").unwrap();
    let config = ok(&route_with(&format!(
        "api_keys: {{ file: {}, upstream_key_file: {} }}",
        keys.display(),
        upstream.display()
    )));
    let api = config.routes[0].security.api_keys.clone().unwrap();
    assert_eq!(api.digests.len(), 1);
    assert_eq!(api.header, "authorization");
    assert_eq!(api.upstream_key.as_deref(), Some("sk-up"));

    std::fs::write(&keys, "sk-plaintext\n").unwrap();
    let source = route_with(&format!("api_keys: {{ file: {} }}", keys.display()));
    one_error(
        &source,
        4,
        "routes[0].api_keys.file",
        "not a hex SHA-256 digest",
    );
    let source = route_with("api_keys: { file: /nonexistent/keys }");
    one_error(&source, 4, "routes[0].api_keys.file", "cannot read");
}

#[test]
fn basic_auth_reads_a_bcrypt_users_file() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("users");
    let hash = "$2y$05$5mGF0Zo1kpvCbH3UCiKrkeXKSCfZjLi.Vh0HBB6Ot0ZVt9JxjCdym";
    std::fs::write(&good, format!("alice:{hash}\n")).unwrap();
    let config = ok(&route_with(&format!(
        "basic_auth: {{ realm: ops, users_file: {} }}, security_headers: true",
        good.display()
    )));
    let security = &config.routes[0].security;
    let basic = security.basic_auth.as_ref().unwrap();
    assert_eq!(basic.realm, "ops");
    assert_eq!(basic.users, [("alice".to_string(), hash.to_string())]);
    assert!(basic.forward_authorization);
    assert!(security.security_headers);

    let plain = dir.path().join("plain");
    std::fs::write(&plain, "alice:secret\n").unwrap();
    one_error(
        &route_with(&format!(
            "basic_auth: {{ users_file: {} }}",
            plain.display()
        )),
        4,
        "routes[0].basic_auth.users_file",
        "not bcrypt",
    );
    one_error(
        &route_with("basic_auth: { users_file: /nonexistent/users }"),
        4,
        "routes[0].basic_auth.users_file",
        "cannot read",
    );
    one_error(
        &route_with(&format!(
            "basic_auth: {{ users_file: {}, realm: 'a\"b' }}",
            good.display()
        )),
        4,
        "routes[0].basic_auth.realm",
        "printable ASCII",
    );
}

/// A file `name` in `dir` holding `text`; its path.
fn file_with(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

#[test]
fn secret_and_ca_files_are_checked_where_they_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let blank = file_with(dir.path(), "blank", " \n");
    let garbage = file_with(dir.path(), "garbage.pem", "not pem");
    let cases = [
        (
            format!("acme:\n  eab: {{ kid: k, hmac_key_file: {blank} }}\n"),
            "acme.eab.hmac_key_file",
            format!("secret file {blank} is empty"),
        ),
        (
            "acme:\n  eab: { kid: k, hmac_key_file: /nonexistent/k }\n".to_string(),
            "acme.eab.hmac_key_file",
            "cannot read secret file /nonexistent/k: ".to_string(),
        ),
        (
            format!("acme:\n  ca_root: {garbage}\n"),
            "acme.ca_root",
            format!("no PEM certificate found in {garbage}"),
        ),
        (
            "acme:\n  ca_root: /nonexistent/ca.pem\n".to_string(),
            "acme.ca_root",
            "cannot read /nonexistent/ca.pem: ".to_string(),
        ),
        (
            format!("cluster:\n  redis: {{ url: 'rediss://r:6380', tls: {{ ca: {garbage} }} }}\n"),
            "cluster.redis.tls.ca",
            format!("{garbage} holds no PEM certificate"),
        ),
        (
            format!("cluster:\n  redis: {{ url: 'redis://r:6379', password_file: {blank} }}\n"),
            "cluster.redis.password_file",
            format!("secret file {blank} is empty"),
        ),
    ];
    for (section, key, message) in cases {
        one_error(&format!("{MINIMAL}{section}"), 9, key, &message);
    }
}

#[test]
fn secrets_are_read_when_used() {
    let dir = tempfile::tempdir().unwrap();
    let token = file_with(dir.path(), "cf.token", " tok\n");
    let config = ok(&format!(
        "{MINIMAL}acme:\n  dns_providers:\n    cf: {{ type: cloudflare, api_token_file: {token} }}\n"
    ));
    let DnsProviderKind::Cloudflare { api_token, .. } = &config.acme.dns_providers["cf"].kind
    else {
        panic!("{:?}", config.acme.dns_providers);
    };
    assert_eq!(api_token.read().unwrap(), "tok");
    std::fs::remove_file(&token).unwrap();
    assert!(api_token
        .read()
        .unwrap_err()
        .contains("cannot read secret file"));
    let unset = Secret::Env("FERROGATE_TEST_UNSET_VARIABLE".into());
    assert!(unset.read().unwrap_err().contains("is not set"));
}

#[test]
fn server_names_resolve_and_defaults_come_from_the_host() {
    let config = ok(&MINIMAL.replace("127.0.0.1:3000", "localhost:3000"));
    let server = &config.upstreams["app"].servers[0];
    assert_eq!(
        (server.address.as_str(), server.socket.port()),
        ("localhost:3000", 3000)
    );
    assert!(server.socket.ip().is_loopback());
    assert!(config.workers >= 1);
    let config = ok(&format!(
        "{MINIMAL}cluster:\n  redis: {{ url: 'redis://127.0.0.1:6379' }}\n"
    ));
    assert!(!config.cluster.unwrap().name.is_empty());
}

/// A file that fails validation still has its files and names looked up: every error at once.
#[test]
fn look_up_errors_come_with_the_validation_errors() {
    let source = "\
listeners: { https: 127.0.0.1:8443 }
tls:
  certificates:
    - { name: site, cert: /nonexistent/site.pem, key: /nonexistent/site.key }
routes:
  - { name: app, hosts: ['a..b'], upstream: app, api_keys: { file: /nonexistent/keys, header: 'bad header' } }
upstreams:
  app:
    servers: [ { address: no-such-host.invalid:80, weight: 0 } ]
";
    let found = errors(source);
    let summary: Vec<(usize, &str)> = found.iter().map(|e| (e.line, e.key.as_str())).collect();
    assert_eq!(
        summary,
        [
            (4, "tls.certificates[0].cert"),
            (4, "tls.certificates[0].key"),
            (6, "routes[0].hosts[0]"),
            (6, "routes[0].api_keys.file"),
            (6, "routes[0].api_keys.header"),
            (9, "upstreams.app.servers[0].address"),
            (9, "upstreams.app.servers[0].weight"),
        ],
        "{found}"
    );
    assert!(
        found.0[5].message.contains("cannot resolve server address"),
        "{found}"
    );
}
