//! Tests of whole files: the golden file, a minimal and the DESIGN.md example, syntax errors, and
//! all errors of several elements reported together; the helpers the other test files share.
//!
//! Most helpers load through `config::load_str` (validation, then resolution) so that a test sees
//! the model the daemon would; their inputs name no files and only literal addresses, so the
//! resolution step finds nothing to look up. [`draft`] runs validation alone.

use std::path::{Path, PathBuf};

use super::{validate, Validated};
use crate::config::draft::{CheckedFileKind, Draft, ServerHost};
use crate::config::error::ConfigErrors;
use crate::config::load_str;
use crate::config::model::{Config, HostMatch, DEFAULT_STATE_DIR};

pub(in crate::config) const MINIMAL: &str = "\
listeners:
  https: 127.0.0.1:8443
routes:
  - { name: app, upstream: app }
upstreams:
  app:
    servers: [ { address: 127.0.0.1:3000 } ]
";

pub(in crate::config) fn ok(source: &str) -> Config {
    match load_str(source, Path::new("test.yaml")) {
        Ok(config) => config,
        Err(errors) => panic!("expected a valid config, got:\n{errors}"),
    }
}

pub(in crate::config) fn errors(source: &str) -> ConfigErrors {
    match load_str(source, Path::new("test.yaml")) {
        Ok(_) => panic!("expected errors for:\n{source}"),
        Err(errors) => errors,
    }
}

/// The draft of `source` read from `/etc/ferrogate/ferrogate.yaml`, validated alone: nothing is
/// read or looked up. Panics on a validation error.
pub(super) fn draft(source: &str) -> Draft {
    let Validated { draft, report } =
        validate(source, Path::new("/etc/ferrogate/ferrogate.yaml")).unwrap();
    match report.finish(draft) {
        Ok(draft) => draft,
        Err(errors) => panic!("expected a valid draft, got:\n{errors}"),
    }
}

/// Asserts exactly one error, at `key` on `line`, whose message contains `needle`.
pub(in crate::config) fn one_error(source: &str, line: usize, key: &str, needle: &str) {
    let found = errors(source);
    assert_eq!(found.len(), 1, "expected one error, got:\n{found}");
    let error = &found.0[0];
    assert_eq!((error.line, error.key.as_str()), (line, key), "{found}");
    assert!(error.message.contains(needle), "{found}");
}

#[test]
fn golden_five_mistakes() {
    let path = Path::new("tests/golden/five_mistakes.yaml");
    let source = include_str!("../../../tests/golden/five_mistakes.yaml");
    let expected = include_str!("../../../tests/golden/five_mistakes.txt");
    let found = load_str(source, path).unwrap_err();
    assert_eq!(found.len(), 5, "{found}");
    assert_eq!(found.to_string(), expected);
}

#[test]
fn golden_element_errors() {
    let path = Path::new("tests/golden/element_errors.yaml");
    let source = include_str!("../../../tests/golden/element_errors.yaml");
    let expected = include_str!("../../../tests/golden/element_errors.txt");
    let found = load_str(source, path).unwrap_err();
    assert_eq!(found.to_string(), expected);
}

#[test]
fn minimal_config_gets_defaults() {
    let config = ok(MINIMAL);
    assert_eq!(config.source, PathBuf::from("test.yaml"));
    assert_eq!(config.state_dir, PathBuf::from(DEFAULT_STATE_DIR));
    assert!(config.workers >= 1);
    assert_eq!(config.listeners.len(), 1);
    assert!(config.listeners[0].tls);
    assert!(config.admin.is_none());
    assert!(config.tls.hsts.is_none() && config.tls.certificates.is_empty());
    let route = &config.routes[0];
    assert_eq!(
        (route.path_prefix.as_str(), route.strip_prefix),
        ("/", false)
    );
    assert!(route.hosts.is_empty() && route.listener.is_none());
    let upstream = &config.upstreams["app"];
    assert_eq!(upstream.servers[0].weight, 1);
    assert_eq!(upstream.timeouts, Default::default());
}

#[test]
fn full_valid_config() {
    let config = ok("\
state_dir: state
workers: 3
listeners:
  http: 0.0.0.0:80
  https: '[::]:443'
  extra:
    - { name: internal, address: 127.0.0.1:8600 }
admin: { listen: 127.0.0.1:9901 }
tls:
  hsts: 1y
routes:
  - { name: chat, hosts: [Chat.Example.com, '*.example.org'], upstream: owui }
  - { name: path, hosts: [example.com], path_prefix: /owui/, strip_prefix: true, upstream: owui }
  - { name: internal, listener: internal, upstream: owui }
upstreams:
  owui:
    servers: [ { address: 10.0.0.11:8080, weight: 2 }, { address: 'localhost:8081' } ]
    balance: round_robin
    timeouts: { connect: 1s, read: 10m, websocket_idle: 1h30m }
");
    assert_eq!(config.state_dir, PathBuf::from("state"));
    assert_eq!(config.workers, 3);
    let names: Vec<_> = config.listeners.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(names, ["http", "https", "internal"]);
    let http = config.listener("http").unwrap();
    assert!(!http.tls && http.redirect_to_https);
    assert!(config.listener("https").unwrap().tls);
    assert!(!config.listener("internal").unwrap().tls);
    assert_eq!(config.admin.unwrap().listen.port(), 9901);
    assert_eq!(config.tls.hsts.unwrap().as_secs(), 365 * 86_400);
    assert_eq!(
        config.routes[0].hosts,
        [
            HostMatch::Exact("chat.example.com".into()),
            HostMatch::Wildcard("example.org".into())
        ]
    );
    assert!(config.routes[1].strip_prefix);
    assert_eq!(config.routes[2].listener.as_deref(), Some("internal"));
    let owui = &config.upstreams["owui"];
    assert_eq!(owui.servers[0].weight, 2);
    assert_eq!(owui.servers[1].address, "localhost:8081");
    assert_eq!(owui.timeouts.websocket_idle.as_secs(), 5400);
}

#[test]
fn relative_state_dir_resolves_against_the_config_directory() {
    let source = MINIMAL.to_string() + "state_dir: state\n";
    let config = load_str(&source, Path::new("/etc/ferrogate/ferrogate.yaml")).unwrap();
    assert_eq!(config.state_dir, PathBuf::from("/etc/ferrogate/state"));
    let source = MINIMAL.to_string() + "state_dir: /srv/state\n";
    let config = load_str(&source, Path::new("/etc/ferrogate/ferrogate.yaml")).unwrap();
    assert_eq!(config.state_dir, PathBuf::from("/srv/state"));
    one_error(
        &(MINIMAL.to_string() + "state_dir: ''\n"),
        8,
        "state_dir",
        "empty",
    );
}

#[test]
fn bundled_configs_are_valid() {
    let demo = include_str!("../../../conf/demo.yaml");
    let config = load_str(demo, Path::new("conf/demo.yaml")).unwrap();
    assert_eq!(config.routes.len(), 2);
    assert!(config.upstreams["gpu"].inference.is_some());
    let owui = include_str!("../../../conf/openwebui.yaml");
    let config = load_str(owui, Path::new("conf/openwebui.yaml")).unwrap();
    assert_eq!(config.routes.len(), 4);
}

/// The DESIGN.md contract example: every key parses; only unimplemented features are rejected.
#[test]
fn design_contract_parses_and_only_unimplemented_features_are_rejected() {
    let source = include_str!("../../../tests/golden/design_contract.yaml");
    let found = errors(source);
    let text = found.to_string();
    assert!(!text.contains("unknown"), "{text}");
    assert!(
        found.iter().all(|e| e.message.contains("not supported yet")
            || e.message.contains("cannot read certificate file")
            || e.message.contains("cannot read key file")
            || e.message.contains("cannot read")
            || e.message.contains("cannot resolve")),
        "{text}"
    );
    let keys: Vec<&str> = found.iter().map(|e| e.key.as_str()).collect();
    for expected in ["acme.ca_root", "acme.eab.hmac_key_file"] {
        assert!(keys.contains(&expected), "missing {expected} in\n{text}");
    }
}

#[test]
fn syntax_error_is_one_error_with_its_position() {
    let found = errors("listeners:\n  http: [1, 2\nroutes: []\n");
    assert_eq!(found.len(), 1, "{found}");
    let error = &found.0[0];
    assert_eq!((error.line, error.key.as_str()), (3, ""));
    assert!(error.message.starts_with("invalid YAML: "), "{found}");
    assert!(!error.message.contains("at line 3"), "{found}");
}

#[test]
fn duplicate_yaml_keys_are_a_syntax_error() {
    let found = errors("workers: 1\nworkers: 2\n");
    assert_eq!(found.len(), 1, "{found}");
    assert!(found.0[0].message.contains("duplicate"), "{found}");
    assert_eq!(found.0[0].line, 2, "{found}");
    let nested = errors("listeners:\n  http: 127.0.0.1:80\n  http: 127.0.0.1:81\n");
    assert_eq!(
        (nested.0[0].line, nested.0[0].key.as_str()),
        (3, "listeners.http"),
        "{nested}"
    );
}

#[test]
fn empty_or_non_mapping_documents() {
    one_error("", 1, "listeners", "at least one listener");
    one_error("- a\n", 1, "", "expected a mapping of sections");
}

#[test]
fn all_errors_of_several_elements_are_reported_together() {
    let found = errors(
        "\
bogus: 1
workers: 0
listeners:
  http: 0.0.0.0:80
  https: nope
tls: { hsts: soon, color: red }
routes:
  - { name: a, upstream: missing }
  - { name: b, upstream: up, typo: 1 }
  - { name: a, upstream: up, hosts: ['a.*.com'] }
upstreams:
  up:
    servers: [ { address: 10.0.0.1:80, weight: 0 } ]
    timeouts: { read: forever }
  down:
    servers: []
",
    );
    let summary: Vec<(usize, &str)> = found.iter().map(|e| (e.line, e.key.as_str())).collect();
    assert_eq!(
        summary,
        [
            (1, "bogus"),
            (2, "workers"),
            (5, "listeners.https"),
            (6, "tls.hsts"),
            (6, "tls.color"),
            (8, "routes[0].upstream"),
            // Route b has an unknown key and still gets its own other error: it matches the
            // same requests as route a.
            (9, "routes[1]"),
            (9, "routes[1].typo"),
            (10, "routes[2].name"),
            (10, "routes[2].hosts[0]"),
            (13, "upstreams.up.servers[0].weight"),
            (14, "upstreams.up.timeouts.read"),
            (16, "upstreams.down.servers"),
        ],
        "{found}"
    );
}

#[test]
fn unknown_keys_point_at_the_key_at_any_depth() {
    let source = MINIMAL.to_string() + "    timeouts: { conect: 1s }\n";
    one_error(
        &source,
        8,
        "upstreams.app.timeouts.conect",
        "unknown key `conect`",
    );
    let found = errors(&(MINIMAL.to_string() + "    timeouts: { conect: 1s }\n"));
    assert_eq!(found.0[0].column, 17, "{found}");
    let source = MINIMAL.replace("- { name: app,", "- { name: app, hots: [a],");
    one_error(&source, 4, "routes[0].hots", "expected one of");
}

#[test]
fn type_errors_point_at_the_value() {
    let source = MINIMAL.replace("3000 }", "3000, weight: heavy }");
    one_error(
        &source,
        7,
        "upstreams.app.servers[0].weight",
        "invalid type",
    );
    let source = MINIMAL.replace("{ name: app, upstream: app }", "{ upstream: app }");
    one_error(&source, 4, "routes[0]", "missing field `name`");
    one_error(
        &(MINIMAL.to_string() + "workers: many\n"),
        8,
        "workers",
        "invalid type",
    );
}

/// Validation reads no file and looks up no name: every one is left in the draft, with the key
/// that named it, for `resolve`.
#[test]
fn validation_reads_no_files_and_looks_up_no_names() {
    let draft = draft(
        "\
listeners: { https: 127.0.0.1:8443 }
tls:
  certificates:
    - { name: site, cert: missing/site.pem, key: /nonexistent/site.key }
acme:
  ca_root: /nonexistent/ca.pem
  eab: { kid: k, hmac_key_file: eab.key }
routes:
  - { name: app, upstream: app, api_keys: { file: keys.txt } }
  - { name: ops, hosts: [ops.test], upstream: app, basic_auth: { users_file: /nonexistent/users } }
upstreams:
  app:
    servers: [ { address: no-such-host.invalid:80 }, { address: 127.0.0.1:81 } ]
cluster:
  redis: { url: 'rediss://r:6380', tls: { ca: /nonexistent/redis-ca.pem } }
",
    );
    let certificate = &draft.tls.certificates[0];
    assert_eq!(certificate.at, "tls.certificates[0]");
    assert_eq!(
        certificate.cert_path,
        PathBuf::from("/etc/ferrogate/missing/site.pem")
    );
    let servers = &draft.upstreams["app"].servers;
    assert_eq!(
        servers[0].host,
        ServerHost::Name {
            host: "no-such-host.invalid".into(),
            port: 80
        }
    );
    assert_eq!(servers[0].at, "upstreams.app.servers[0].address");
    assert_eq!(
        servers[1].host,
        ServerHost::Socket(([127, 0, 0, 1], 81).into())
    );
    let route = &draft.routes[0];
    let api_keys = route.api_keys.as_ref().unwrap();
    assert_eq!(
        (api_keys.file.written.as_str(), api_keys.file.path.as_path()),
        ("keys.txt", Path::new("/etc/ferrogate/keys.txt"))
    );
    assert!(route.route.security.api_keys.is_none());
    let users = &draft.routes[1].basic_auth.as_ref().unwrap().users_file;
    assert_eq!(users.path, Path::new("/nonexistent/users"));
    let checked: Vec<(&str, CheckedFileKind)> = draft
        .checked_files
        .iter()
        .map(|file| (file.at.as_str(), file.kind))
        .collect();
    assert_eq!(
        checked,
        [
            ("acme.ca_root", CheckedFileKind::AcmeCaRoot),
            ("acme.eab.hmac_key_file", CheckedFileKind::Secret),
            ("cluster.redis.tls.ca", CheckedFileKind::RedisCaRoot),
        ]
    );
    assert_eq!(draft.workers, None);
    assert_eq!(draft.cluster.unwrap().name, None);
}
