//! Tests of the `acme` section and ACME certificates: every key, with the position of each error.

use super::tests::{draft, errors, ok};
use crate::config::model::{
    Challenge, DnsProviderKind, Secret, TsigAlgorithm, LETSENCRYPT_DIRECTORY,
    LETSENCRYPT_STAGING_DIRECTORY,
};

const BASE: &str = "\
listeners:
  http: 127.0.0.1:8080
  https: 127.0.0.1:8443
routes:
  - { name: app, upstream: app }
upstreams:
  app:
    servers: [ { address: 127.0.0.1:3000 } ]
";

/// (line, key, message) of every error.
fn found(source: &str) -> Vec<(usize, String, String)> {
    errors(source)
        .0
        .into_iter()
        .map(|e| (e.line, e.key, e.message))
        .collect()
}

fn assert_one(source: &str, line: usize, key: &str, needle: &str) {
    let all = found(source);
    assert_eq!(all.len(), 1, "{all:#?}");
    assert_eq!((all[0].0, all[0].1.as_str()), (line, key), "{all:#?}");
    assert!(all[0].2.contains(needle), "{all:#?}");
}

#[test]
fn acme_certificates_and_section_are_accepted() {
    let source = format!(
        "{BASE}tls:
  certificates:
    - {{ name: ai, domains: [AI.example.com], acme: {{ challenge: http-01 }} }}
    - {{ name: wild, domains: ['*.example.com', example.com], acme: {{ challenge: dns-01, dns_provider: bind }} }}
acme:
  directory: letsencrypt-staging
  email: ops@example.com
  dns_resolvers: [127.0.0.1:5353]
  retry_min: 2s
  retry_max: 1m
  dns_providers:
    bind: {{ type: rfc2136, server: 127.0.0.1:53, tsig_key_name: acme, tsig_algorithm: hmac-sha512, tsig_secret_file: /etc/ferrogate/tsig.key, nameservers: [127.0.0.1:53], propagation_timeout: 30s }}
    cf: {{ type: cloudflare, api_token_file: cf.token }}
    reg: {{ type: regru, username: u, password_env: REGRU_PASS, zone: example.com, api_url: 'http://127.0.0.1:9/api' }}
    hook: {{ type: exec, command: /bin/true }}
    web: {{ type: webhook, url: 'http://127.0.0.1:9/dns/' }}
"
    );
    // Validation alone: the secret files are only named here, read by `resolve`.
    let config = draft(&source);
    assert_eq!(config.acme.directory, LETSENCRYPT_STAGING_DIRECTORY);
    assert_eq!(config.acme.email.as_deref(), Some("ops@example.com"));
    assert_eq!(config.acme.retry_min.as_secs(), 2);
    assert_eq!(config.acme.retry_max.as_secs(), 60);
    assert_eq!(config.acme.dns_resolvers.len(), 1);
    assert_eq!(config.tls.acme.len(), 2);
    assert_eq!(config.tls.acme[0].domains, ["ai.example.com"]);
    assert_eq!(config.tls.acme[0].challenge, Challenge::Http01);
    assert_eq!(config.tls.acme[1].index, 1);
    assert_eq!(
        config.tls.acme[1].challenge,
        Challenge::Dns01 {
            provider: "bind".into()
        }
    );
    let bind = &config.acme.dns_providers["bind"];
    assert_eq!(bind.propagation_timeout.as_secs(), 30);
    match &bind.kind {
        DnsProviderKind::Rfc2136 {
            tsig_algorithm,
            tsig_secret,
            ..
        } => {
            assert_eq!(*tsig_algorithm, TsigAlgorithm::HmacSha512);
            assert_eq!(*tsig_secret, Secret::File("/etc/ferrogate/tsig.key".into()));
        }
        other => panic!("{other:?}"),
    }
    match &config.acme.dns_providers["reg"].kind {
        DnsProviderKind::Regru {
            password, api_url, ..
        } => {
            assert_eq!(*password, Secret::Env("REGRU_PASS".into()));
            assert_eq!(api_url, "http://127.0.0.1:9/api");
        }
        other => panic!("{other:?}"),
    }
    match &config.acme.dns_providers["cf"].kind {
        DnsProviderKind::Cloudflare { api_token, .. } => {
            assert_eq!(*api_token, Secret::File("/etc/ferrogate/cf.token".into()))
        }
        other => panic!("{other:?}"),
    }
    match &config.acme.dns_providers["web"].kind {
        DnsProviderKind::Webhook { url } => assert_eq!(url, "http://127.0.0.1:9/dns"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn acme_section_defaults_to_letsencrypt() {
    let source = format!(
        "{BASE}tls:\n  certificates:\n    - {{ name: a, domains: [a.com], acme: {{ challenge: http-01 }} }}\n"
    );
    let config = ok(&source);
    assert_eq!(config.acme.directory, LETSENCRYPT_DIRECTORY);
    assert!(config.acme.email.is_none());
}

#[test]
fn acme_section_keys_report_their_positions() {
    let cases: &[(&str, usize, &str, &str)] = &[
        ("  directory: http://x/dir\n", 10, "acme.directory", "not an https URL"),
        ("  directory: lets\n", 10, "acme.directory", "use `letsencrypt`"),
        ("  email: nobody\n", 10, "acme.email", "not an email address"),
        ("  ca_root: /nonexistent/ca.pem\n", 10, "acme.ca_root", "cannot read"),
        ("  eab: { kid: k, hmac_key_file: /nonexistent/k }\n", 10, "acme.eab.hmac_key_file", "cannot read secret file"),
        ("  eab: { kid: k }\n", 10, "acme.eab", "needs `hmac_key_file` or `hmac_key_env`"),
        ("  eab: { kid: k, hmac_key_env: A, hmac_key_file: /x }\n", 10, "acme.eab.hmac_key_env", "not both"),
        ("  dns_resolvers: [localhost]\n", 10, "acme.dns_resolvers[0]", "invalid address"),
        ("  retry_min: soon\n", 10, "acme.retry_min", ""),
        ("  retry_min: 0s\n", 10, "acme.retry_min", "longer than zero"),
        ("  retry_min: 1h\n  retry_max: 1m\n", 11, "acme.retry_max", "shorter than `retry_min`"),
        ("  emial: a@b.c\n", 10, "acme.emial", "unknown key"),
        ("  dns_providers:\n    p: { type: carrier-pigeon }\n", 11, "acme.dns_providers.p.type", "unknown variant"),
        ("  dns_providers:\n    p: { type: exec }\n", 11, "acme.dns_providers.p", "missing key `command`"),
        ("  dns_providers:\n    p: { type: exec, command: /x, server: 1.2.3.4:53 }\n", 11, "acme.dns_providers.p.server", "does not apply to a `exec` provider"),
        ("  dns_providers:\n    p: { type: exec, command: /x, nameservers: [x] }\n", 11, "acme.dns_providers.p.nameservers[0]", "invalid address"),
        ("  dns_providers:\n    p: { type: exec, command: /x, propagation_timeout: x }\n", 11, "acme.dns_providers.p.propagation_timeout", ""),
        ("  dns_providers:\n    p: { type: exec, command: /x, colour: red }\n", 11, "acme.dns_providers.p.colour", "unknown key"),
        ("  dns_providers:\n    p: { type: webhook, url: 'ftp://x' }\n", 11, "acme.dns_providers.p.url", "http(s) URL"),
        ("  dns_providers:\n    p: { type: cloudflare }\n", 11, "acme.dns_providers.p", "needs `api_token_file` or `api_token_env`"),
        ("  dns_providers:\n    p: { type: cloudflare, api_token_env: T, api_url: nope }\n", 11, "acme.dns_providers.p.api_url", "not an http(s) URL"),
        ("  dns_providers:\n    p: { type: regru, password_env: P }\n", 11, "acme.dns_providers.p", "missing key `username`"),
        ("  dns_providers:\n    p: { type: regru, username: u, password_env: P, zone: 'a..b' }\n", 11, "acme.dns_providers.p.zone", "not a zone name"),
        ("  dns_providers:\n    p: { type: rfc2136, server: ns1:53, tsig_key_name: k, tsig_secret_env: S }\n", 11, "acme.dns_providers.p.server", "invalid address"),
        ("  dns_providers:\n    p: { type: rfc2136, server: 1.2.3.4:53, tsig_secret_env: S }\n", 11, "acme.dns_providers.p", "missing key `tsig_key_name`"),
        ("  dns_providers:\n    p: { type: rfc2136, server: 1.2.3.4:53, tsig_key_name: k, tsig_algorithm: hmac-md5, tsig_secret_env: S }\n", 11, "acme.dns_providers.p.tsig_algorithm", "unsupported TSIG algorithm"),
        ("  dns_providers:\n    p: { type: rfc2136, server: 1.2.3.4:53, tsig_key_name: k }\n", 11, "acme.dns_providers.p", "needs `tsig_secret_file` or `tsig_secret_env`"),
    ];
    for (section, line, key, needle) in cases {
        let all = found(&format!("{BASE}acme:\n{section}"));
        assert!(
            all.iter()
                .any(|(l, k, m)| l == line && k == key && m.contains(needle)),
            "{section}: expected {line} {key} `{needle}` in {all:#?}"
        );
    }
}

#[test]
fn acme_certificates_report_their_positions() {
    let cert = |flow: &str| format!("{BASE}tls:\n  certificates:\n    - {flow}\n");
    assert_one(
        &cert("{ name: a, acme: { challenge: http-01 } }"),
        11,
        "tls.certificates[0]",
        "needs `domains`",
    );
    assert_one(
        &cert("{ name: a, domains: [], acme: { challenge: http-01 } }"),
        11,
        "tls.certificates[0].domains",
        "must not be empty",
    );
    assert_one(
        &cert("{ name: a, domains: [a.com, A.com], acme: { challenge: http-01 } }"),
        11,
        "tls.certificates[0].domains[1]",
        "duplicate domain",
    );
    assert_one(
        &cert("{ name: a, domains: ['*.a.com'], acme: { challenge: http-01 } }"),
        11,
        "tls.certificates[0].domains[0]",
        "needs `challenge: dns-01`",
    );
    assert_one(
        &cert("{ name: a, domains: ['a b'], acme: { challenge: http-01 } }"),
        11,
        "tls.certificates[0].domains[0]",
        "not allowed",
    );
    assert_one(
        &cert("{ name: a/b, domains: [a.com], acme: { challenge: http-01 } }"),
        11,
        "tls.certificates[0].name",
        "names its directory",
    );
    assert_one(
        &cert("{ name: a, domains: [a.com], acme: { challenge: dns-01 } }"),
        11,
        "tls.certificates[0].acme",
        "needs `dns_provider`",
    );
    assert_one(
        &cert("{ name: a, domains: [a.com], acme: { challenge: http-01, dns_provider: x } }"),
        11,
        "tls.certificates[0].acme.dns_provider",
        "goes with `challenge: dns-01`",
    );
    assert_one(
        &cert("{ name: a, domains: [a.com], acme: { challenge: dns-01, dns_provider: x } }"),
        11,
        "tls.certificates[0].acme.dns_provider",
        "no DNS provider `x`",
    );
    assert_one(
        &cert("{ name: a, domains: [a.com], acme: { challenge: tls-alpn-01 } }"),
        11,
        "tls.certificates[0].acme.challenge",
        "unknown variant",
    );
    assert_one(
        &cert("{ name: a, domains: [a.com], cert: /x.pem, acme: { challenge: http-01 } }"),
        11,
        "tls.certificates[0].cert",
        "does not go with `acme`",
    );
    assert_one(
        &cert("{ name: a, domains: [a.com] }"),
        11,
        "tls.certificates[0]",
        "needs `acme`",
    );
    let no_http = cert("{ name: a, domains: [a.com], acme: { challenge: http-01 } }")
        .replace("  http: 127.0.0.1:8080\n", "");
    assert_one(
        &no_http,
        10,
        "tls.certificates[0].acme.challenge",
        "needs `listeners.http`",
    );
}
