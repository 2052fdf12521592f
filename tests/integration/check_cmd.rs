//! `ferrogate check`: exit 0 on a valid config, non-zero with `FILE:LINE:COLUMN: KEY: MESSAGE`
//! lines on an invalid one, and the example configs in `conf/` and the manual's reference pass.

use std::path::Path;
use std::process::Output;

use crate::backends::closed_port;
use crate::harness::{run_check, write_cert, DaemonBuilder, DEFAULT_TIMEOUTS};

fn combined(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The error lines for `path`: `(line, column, rest)` parsed from `PATH:LINE:COLUMN: rest`.
fn error_lines(output: &str, path: &Path) -> Vec<(usize, usize, String)> {
    let prefix = format!("{}:", path.display());
    output
        .lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .filter_map(|rest| {
            let mut parts = rest.splitn(3, ':');
            let line = parts.next()?.trim().parse().ok()?;
            let column = parts.next()?.trim().parse().ok()?;
            Some((line, column, parts.next()?.trim().to_string()))
        })
        .collect()
}

/// The 1-based number of the first line containing `needle`.
fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .map(|i| i + 1)
        .expect("needle in config")
}

/// A config around the given `routes`, `upstreams` and extra `listeners` lines (each ending in a
/// newline); valid when they are.
fn config_with(dir: &Path, routes: &str, upstreams: &str, listeners_extra: &str) -> String {
    let cert = write_cert(dir, "c", &["chat.test"]);
    format!(
        "state_dir: {state}\n\
         listeners:\n\
         \x20 http: {http}\n\
         \x20 https: {https}\n\
         {listeners_extra}\
         tls:\n\
         \x20 certificates:\n\
         \x20   - {{ name: c, cert: {cert}, key: {key} }}\n\
         routes:\n\
         {routes}\
         upstreams:\n\
         {upstreams}",
        state = dir.join("state").display(),
        http = closed_port().addr,
        https = closed_port().addr,
        cert = cert.cert.display(),
        key = cert.key.display(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn valid_config_passes() {
    let mut builder = DaemonBuilder::new()
        .hsts("1y")
        .extra_listener("internal", false)
        .certificate("a", &["a.test", "*.a.test"])
        .route("{ name: chat, hosts: [chat.test], upstream: u }")
        .route("{ name: wild, hosts: [\"*.wild.test\"], upstream: u }")
        .route("{ name: p, hosts: [paths.test], path_prefix: /owui/, strip_prefix: true, upstream: u }")
        .route("{ name: internal, listener: internal, upstream: u }")
        .upstream("u", &[closed_port().addr, closed_port().addr], DEFAULT_TIMEOUTS);
    let path = builder.write_config();
    let out = run_check(&path);
    assert!(
        out.status.success(),
        "check failed on a valid config:\n{}\n{}",
        builder.config_yaml(),
        combined(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_error_is_reported_at_once_with_lines() {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = config_with(
        dir.path(),
        "  - { name: chat, hosts: [chat.test], upstream: missing_upstream }\n",
        "  real:\n    servers: [ { address: 127.0.0.1:1 } ]\n    timeouts: { connect: soonish, read: 2s }\n",
        "  bogus_listener_key: 127.0.0.1:1\n",
    );
    let path = dir.path().join("bad.yaml");
    std::fs::write(&path, &text).expect("write config");

    let out = run_check(&path);
    let output = combined(&out);
    assert!(!out.status.success(), "check accepted:\n{text}\n{output}");
    let errors = error_lines(&output, &path);
    let on_line = |n: usize| errors.iter().find(|(line, _, _)| *line == n);
    let route_line = line_of(&text, "missing_upstream");
    let route = on_line(route_line).unwrap_or_else(|| {
        panic!("no error on line {route_line} (unknown upstream):\n{text}\n{output}")
    });
    assert!(route.1 >= 1, "column: {output}");
    assert!(
        route.2.contains("missing_upstream") || route.2.contains("upstream"),
        "{output}"
    );
    let duration_line = line_of(&text, "soonish");
    let duration = on_line(duration_line).unwrap_or_else(|| {
        panic!("no error on line {duration_line} (bad duration):\n{text}\n{output}")
    });
    assert!(
        duration.2.contains("upstreams.real.timeouts.connect"),
        "key path missing: {output}"
    );
    let key_line = line_of(&text, "bogus_listener_key");
    let unknown = on_line(key_line)
        .unwrap_or_else(|| panic!("no error on line {key_line} (unknown key):\n{text}\n{output}"));
    assert!(unknown.2.contains("bogus_listener_key"), "{output}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_key_is_reported_with_its_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = config_with(
        dir.path(),
        "  - { name: chat, hosts: [chat.test], upstream: real }\n",
        "  real:\n    servers: [ { address: 127.0.0.1:1 } ]\n",
        "  bogus_listener_key: 127.0.0.1:1\n",
    );
    let path = dir.path().join("bad.yaml");
    std::fs::write(&path, &text).expect("write config");

    let out = run_check(&path);
    let output = combined(&out);
    assert!(!out.status.success(), "check accepted:\n{text}\n{output}");
    let errors = error_lines(&output, &path);
    let key_line = line_of(&text, "bogus_listener_key");
    let unknown = errors
        .iter()
        .find(|(line, _, _)| *line == key_line)
        .unwrap_or_else(|| panic!("no error on line {key_line} (unknown key):\n{text}\n{output}"));
    assert!(unknown.2.contains("bogus_listener_key"), "{output}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn example_configs_pass_check() {
    let conf = Path::new(env!("CARGO_MANIFEST_DIR")).join("conf");
    let mut checked = Vec::new();
    for entry in std::fs::read_dir(&conf).expect("conf/") {
        let path = entry.expect("entry").path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        // kubernetes.yaml holds manifests; its embedded configuration is checked in lifecycle.rs.
        if !name.ends_with(".yaml") || name == "kubernetes.yaml" {
            continue;
        }
        checked.push(name.to_string());
        let out = run_check(&path);
        assert!(
            out.status.success(),
            "ferrogate check {} failed:\n{}",
            path.display(),
            combined(&out)
        );
    }
    for required in ["demo.yaml", "openwebui.yaml", "container.yaml"] {
        assert!(
            checked.iter().any(|c| c == required),
            "{required} not in conf/"
        );
    }
}

/// The configuration reference in docs/configuration.md is a file a reader copies: every key in
/// it must exist and every value must be valid. Its certificate, key and secret paths under
/// /etc/ferrogate are examples, so "cannot read" on those is the only error allowed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_manual_reference_config_is_valid_but_for_its_example_files() {
    let manual = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/configuration.md");
    let manual = std::fs::read_to_string(manual).expect("docs/configuration.md");
    let section = manual
        .split_once("## Configuration reference")
        .expect("configuration reference section")
        .1;
    let yaml = section
        .split_once("```yaml\n")
        .and_then(|(_, rest)| rest.split_once("```"))
        .expect("a yaml block in the configuration reference")
        .0;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("reference.yaml");
    std::fs::write(&path, yaml).expect("write reference config");

    let out = run_check(&path);
    let output = combined(&out);
    let errors = error_lines(&output, &path);
    assert!(
        !errors.is_empty(),
        "the example files should be missing:\n{output}"
    );
    for (line, _, rest) in &errors {
        assert!(
            rest.contains("cannot read") && rest.contains("/etc/ferrogate/"),
            "docs/configuration.md reference line {line}: {rest}\n{output}"
        );
    }
}
