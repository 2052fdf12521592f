//! `ferrogate import-haproxy`: OpenWebUI's HAProxy example (subdomain and path variants)
//! translates into files `ferrogate check` accepts; the file with every construct translates
//! into keys this build's configuration has, with a `FILE:LINE` note for each construct that
//! has no translation (or needs keys it lacks); an unreadable file exits 2.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_yaml::Value;

use crate::harness::{run_check, BIN};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/haproxy")
        .join(name)
}

/// Every fixture.
const FIXTURES: &[&str] = &[
    "openwebui-subdomain.cfg",
    "openwebui-path.cfg",
    "every-construct.cfg",
];

/// Keys the translation must not write: `ferrogate check` of this build refuses them.
const MISSING_KEYS: &[&str] = &[
    "match",
    "headers",
    "redirect",
    "respond",
    "rewrite",
    "deny_user_agents",
    "countries",
];

fn import(path: &Path) -> Output {
    Command::new(BIN)
        .arg("import-haproxy")
        .arg(path)
        .output()
        .expect("run ferrogate import-haproxy")
}

/// Translates a fixture: the YAML and the note lines.
fn translate(name: &str) -> (String, Vec<String>) {
    let out = import(&fixture(name));
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(0), "{name}: {stderr}");
    let notes: Vec<String> = stderr.lines().map(str::to_string).collect();
    (String::from_utf8_lossy(&out.stdout).into_owned(), notes)
}

/// The 1-based line of the fixture that starts (after indentation) with `start`.
fn line_of(name: &str, start: &str) -> usize {
    let text = std::fs::read_to_string(fixture(name)).expect("fixture");
    text.lines()
        .position(|l| l.trim_start().starts_with(start))
        .map(|i| i + 1)
        .unwrap_or_else(|| panic!("no line starting with {start:?} in {name}"))
}

/// The note for a line of a fixture.
fn note<'a>(notes: &'a [String], name: &str, line: usize) -> Option<&'a str> {
    let prefix = format!("{}:{line}: ", fixture(name).display());
    notes.iter().find_map(|n| n.strip_prefix(prefix.as_str()))
}

#[test]
fn every_fixture_translates_into_keys_check_accepts() {
    let dir = tempfile::tempdir().expect("tempdir");
    for name in FIXTURES {
        let (yaml, notes) = translate(name);
        let prefix = fixture(name).display().to_string();
        for line in &notes {
            let rest = line
                .strip_prefix(&prefix)
                .and_then(|r| r.strip_prefix(':'))
                .unwrap_or_else(|| panic!("{name}: not a FILE:LINE note: {line}"));
            let (number, message) = rest.split_once(": ").expect("LINE: message");
            assert!(
                number.parse::<usize>().is_ok() && !message.is_empty(),
                "{line}"
            );
        }
        let value: Value =
            serde_yaml::from_str(&yaml).unwrap_or_else(|e| panic!("{name}: {e}\n{yaml}"));
        for route in value["routes"].as_sequence().into_iter().flatten() {
            for key in MISSING_KEYS {
                assert!(route[*key].is_null(), "{name}: route key {key}\n{yaml}");
            }
        }
        assert!(!yaml.contains("client_auth"), "{name}\n{yaml}");
        for (upstream, settings) in value["upstreams"].as_mapping().into_iter().flatten() {
            assert!(
                settings["tls"].is_null(),
                "{name}: {upstream:?} tls\n{yaml}"
            );
        }

        let path = dir.path().join(format!("{name}.yaml"));
        std::fs::write(&path, &yaml).expect("write translation");
        let check = run_check(&path);
        let output = String::from_utf8_lossy(&check.stdout).into_owned();
        // The certificate files the HAProxy file names exist on its own machine only.
        let error_prefix = format!("{}:", path.display());
        let errors: Vec<&str> = output
            .lines()
            .filter(|l| l.starts_with(&error_prefix))
            .collect();
        for error in &errors {
            assert!(
                error.contains("cannot read certificate file /etc/haproxy/")
                    || error.contains("cannot read key file /etc/haproxy/"),
                "{name}: ferrogate check refused the translation: {error}\n{yaml}"
            );
        }
        if errors.is_empty() {
            assert!(check.status.success(), "{name}: {output}");
        }
        if *name != "every-construct.cfg" {
            assert!(
                check.status.success(),
                "{name}: ferrogate check refused the translation:\n{output}\n{yaml}"
            );
        }
    }
}

#[test]
fn openwebuis_example_becomes_acme_a_host_route_and_a_sticky_upstream() {
    let name = "openwebui-subdomain.cfg";
    let (yaml, notes) = translate(name);
    let value: Value = serde_yaml::from_str(&yaml).expect("yaml");
    let frontend = line_of(name, "frontend web");
    assert!(
        yaml.contains(&format!("# frontend web ({name}:{frontend})")),
        "{yaml}"
    );
    assert_eq!(
        value["listeners"]["http"]["address"],
        Value::from("0.0.0.0:80")
    );
    assert_eq!(
        value["listeners"]["https"]["address"],
        Value::from("0.0.0.0:443")
    );
    assert_eq!(
        value["listeners"]["https"]["header_timeout"],
        Value::from("300s")
    );
    assert_eq!(value["acme"]["directory"], Value::from("letsencrypt"));
    let cert = &value["tls"]["certificates"][0];
    assert_eq!(cert["domains"][0], Value::from("chat.example.com"));
    let route = &value["routes"][0];
    assert_eq!(route["hosts"][0], Value::from("chat.example.com"));
    assert_eq!(route["upstream"], Value::from("owui"));
    assert_eq!(
        value["routes"].as_sequence().map(Vec::len),
        Some(1),
        "certbot's route is gone"
    );
    let owui = &value["upstreams"]["owui"];
    assert_eq!(owui["servers"].as_sequence().map(Vec::len), Some(2));
    assert_eq!(owui["sticky"]["cookie"], Value::from("SERVERID"));
    assert_eq!(owui["timeouts"]["websocket_idle"], Value::from("1h"));
    assert_eq!(owui["timeouts"]["read"], Value::from("10m"));
    assert!(value["upstreams"]["letsencrypt-backend"].is_null());
    assert!(yaml.contains("ferrogate sets X-Client-IP itself"), "{yaml}");
    let crt = line_of(name, "bind 0.0.0.0:443");
    assert!(
        note(&notes, name, crt).is_some_and(|n| n.contains("directory")),
        "{notes:#?}"
    );
    let chroot = line_of(name, "chroot");
    assert!(note(&notes, name, chroot).is_some(), "{notes:#?}");

    let name = "openwebui-path.cfg";
    let (yaml, notes) = translate(name);
    let value: Value = serde_yaml::from_str(&yaml).expect("yaml");
    assert_eq!(value["routes"][0]["path_prefix"], Value::from("/owui/"));
    assert!(value["routes"][0]["hosts"].is_null());
    let backend = line_of(name, "backend letsencrypt-backend");
    assert!(
        note(&notes, name, backend).is_some_and(|n| n.contains("no route names a host")),
        "{notes:#?}"
    );
}

#[test]
fn every_construct_is_translated_or_noted() {
    let name = "every-construct.cfg";
    let (yaml, notes) = translate(name);
    let value: Value = serde_yaml::from_str(&yaml).expect("yaml");
    assert_eq!(value["workers"], Value::from(4));
    let https = &value["listeners"]["https"];
    assert_eq!(https["max_connections"], Value::from(10000));
    assert!(https["client_auth"].is_null());
    let routes = value["routes"].as_sequence().cloned().unwrap_or_default();
    let find = |pred: &dyn Fn(&Value) -> bool| routes.iter().find(|r| pred(r)).cloned();
    assert!(find(&|r| r["hosts"][0] == *"*.apps.example.com").is_some());
    assert!(find(&|r| r["allow"][0] == *"10.0.0.0/8" && r["path_prefix"] == *"/admin/").is_some());
    assert!(find(&|r| r["listener"] == *"http" && r["upstream"] == *"health").is_some());
    assert!(find(&|r| r["upstream"] == *"admin").is_none());
    assert_eq!(
        value["upstreams"]["chat"]["health"]["path"],
        Value::from("/health")
    );
    assert_eq!(
        value["upstreams"]["chat"]["sticky"]["ttl"],
        Value::from("8h")
    );
    assert_eq!(
        value["upstreams"]["health"]["sticky"]["mode"],
        Value::from("client_ip")
    );
    assert_eq!(
        value["upstreams"]["api"]["balance"],
        Value::from("least_inflight")
    );
    assert!(value["upstreams"]["tcp-db"].is_null());
    assert!(value["upstreams"]["certbot"].is_null());

    for (start, says) in [
        ("log /dev/log", "logs to stderr"),
        ("stats socket", "ferrogate ctl"),
        ("ssl-default-bind-ciphers", "fixed"),
        ("timeout client", "header_timeout"),
        ("userlist admins", "userlist"),
        ("capture request", "access log"),
        ("http-request set-header X-Conditional", "ssl_fc"),
        ("http-request replace-path", "rewrite"),
        ("use_backend legacy", "path_reg"),
        ("use_backend chat if !internal", "!src"),
        ("bind 127.0.0.1:8443", "directory"),
        ("server c3", "backup"),
        ("balance uri", "not the URI"),
        ("server h1", "send-proxy"),
        ("backend tcp-db", "mode tcp"),
        // Constructs whose keys this build's configuration lacks.
        ("bind :443 ssl", "`client_auth`"),
        ("http-request deny if bad_bot", "`deny_user_agents`"),
        ("http-request deny deny_status 429", "`match`"),
        ("http-request redirect location", "`redirect`"),
        ("http-request return", "`respond`"),
        ("http-request set-header X-Env", "`headers`"),
        ("http-request add-header X-Request-Source", "`headers`"),
        ("http-request del-header X-Internal", "`headers`"),
        ("http-response set-header Cache-Control", "`headers`"),
        ("http-response del-header X-Powered-By", "`headers`"),
        ("use_backend api if", "`match`"),
        ("use_backend admin if", "`match`"),
        ("server a1", "`tls`"),
        ("server adm", "`tls`"),
    ] {
        let line = line_of(name, start);
        assert!(
            notes
                .iter()
                .filter(|n| n.starts_with(&format!("{}:{line}: ", fixture(name).display())))
                .any(|n| n.contains(says)),
            "no note saying {says:?} at {name}:{line} ({start}):\n{}",
            notes.join("\n")
        );
    }
    // Constructs with a translation get no note.
    for start in [
        "cookie SRV",
        "option httpchk GET /health",
        "acl internal src",
    ] {
        let line = line_of(name, start);
        assert_eq!(note(&notes, name, line), None, "{start}");
    }
}

#[test]
fn an_unreadable_or_empty_file_exits_2() {
    let out = import(Path::new("/nonexistent/haproxy.cfg"));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read /nonexistent/haproxy.cfg"));
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("haproxy.cfg");
    std::fs::write(&path, "global\n    daemon\n").expect("write");
    let out = import(&path);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("{}:2: ", path.display())),
        "{stderr}"
    );
    assert!(stderr.contains("nothing to translate"), "{stderr}");
}
