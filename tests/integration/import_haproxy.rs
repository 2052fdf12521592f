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
        let _: Value =
            serde_yaml::from_str(&yaml).unwrap_or_else(|e| panic!("{name}: {e}\n{yaml}"));

        let path = dir.path().join(format!("{name}.yaml"));
        std::fs::write(&path, &yaml).expect("write translation");
        let check = run_check(&path);
        let output = String::from_utf8_lossy(&check.stdout).into_owned();
        // The certificate and CA files the HAProxy file names exist on its own machine only.
        let error_prefix = format!("{}:", path.display());
        let errors: Vec<&str> = output
            .lines()
            .filter(|l| l.starts_with(&error_prefix))
            .collect();
        for error in &errors {
            assert!(
                error.contains("cannot read certificate file /etc/haproxy/")
                    || error.contains("cannot read key file /etc/haproxy/")
                    || error.contains("cannot read /etc/haproxy/"),
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
    assert_eq!(https["client_auth"]["mode"], Value::from("optional"));
    assert_eq!(
        https["client_auth"]["ca"],
        Value::from("/etc/haproxy/clients-ca.pem")
    );
    let routes = value["routes"].as_sequence().cloned().unwrap_or_default();
    let find = |pred: &dyn Fn(&Value) -> bool| routes.iter().find(|r| pred(r)).cloned();
    assert!(find(&|r| r["hosts"][0] == *"*.apps.example.com").is_some());
    assert!(find(&|r| r["allow"][0] == *"10.0.0.0/8" && r["path_prefix"] == *"/admin/").is_some());
    assert!(find(&|r| r["listener"] == *"http" && r["upstream"] == *"health").is_some());
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
    // Request rules, client certificates and TLS to servers.
    let api = find(&|r| r["upstream"] == *"api").expect("a route to api");
    assert_eq!(
        api["match"]["headers"]["host"]["regex"],
        Value::from("(?i)^api\\.")
    );
    assert_eq!(
        api["headers"]["request"]["add"]["X-Request-Source"],
        Value::from("{client_ip}")
    );
    assert_eq!(
        api["headers"]["response"]["remove"][0],
        Value::from("X-Powered-By")
    );
    assert!(routes
        .iter()
        .all(|r| r["deny_user_agents"][0] == *"(?i)python-requests"
            || r["listener"] == *"http"
            || r["name"] == *"internal-api"));
    let moved = find(&|r| !r["redirect"].is_null()).expect("a redirect route");
    assert_eq!(moved["redirect"]["status"], Value::from(301));
    let limited = find(&|r| r["respond"]["status"].as_u64() == Some(429)).expect("a 429 route");
    assert_eq!(limited["match"]["methods"][0], Value::from("POST"));
    assert!(find(&|r| r["respond"]["body"] == *"ok").is_some());
    let admin = find(&|r| r["upstream"] == *"admin").expect("a route to admin");
    assert_eq!(admin["match"]["client"][0], Value::from("10.0.0.0/8"));
    assert_eq!(
        value["upstreams"]["api"]["tls"]["sni"],
        Value::from("api.internal")
    );
    assert_eq!(
        value["upstreams"]["api"]["tls"]["verify"],
        Value::from(false)
    );
    assert_eq!(
        value["upstreams"]["admin"]["tls"]["ca"],
        Value::from("/etc/haproxy/internal-ca.pem")
    );
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
        (
            "http-request return",
            "path_prefix /ping also matches below it",
        ),
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
        "bind :443 ssl",
        "http-request deny if bad_bot",
        "http-request deny deny_status 429",
        "http-request redirect location",
        "http-request set-header X-Env",
        "http-request add-header X-Request-Source",
        "http-request del-header X-Internal",
        "http-response set-header Cache-Control",
        "http-response del-header X-Powered-By",
        "use_backend api if",
        "use_backend admin if",
        "server a1",
        "server adm",
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
