//! What the Debian package installs, checked without building it (scripts/test-package.sh
//! builds, installs and runs it): the packaged unit verifies and keeps every directive of
//! `systemd/ferrogate.service` but the user and paths, and the packaged configuration passes
//! `ferrogate check` as installed and with its commented ACME example switched on.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::harness::{run_check, BIN};

fn repo_file(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

/// `Key=value` lines of a unit, comments and section headers left out.
fn directives(unit: &str) -> BTreeSet<String> {
    unit.lines()
        .map(str::trim)
        .filter(|l| l.contains('=') && !l.starts_with('#') && !l.starts_with(';'))
        .map(str::to_string)
        .collect()
}

#[test]
fn packaged_unit_keeps_the_repository_unit_but_user_and_paths() {
    let packaged =
        std::fs::read_to_string(repo_file("packaging/debian/ferrogate.service")).expect("unit");
    let repository = std::fs::read_to_string(repo_file("systemd/ferrogate.service")).expect("unit");
    let packaged_lines = directives(&packaged);
    for line in directives(&repository.replace("/usr/local/bin/", "/usr/bin/")) {
        if line == "DynamicUser=yes" {
            continue;
        }
        assert!(
            packaged_lines.contains(&line),
            "the packaged unit lacks {line}"
        );
    }
    for required in [
        "User=ferrogate",
        "Group=ferrogate",
        "StateDirectory=ferrogate",
        "StateDirectoryMode=0700",
        "ExecStart=/usr/bin/ferrogate run --config /etc/ferrogate/ferrogate.yaml",
        "ExecReload=/bin/kill -HUP $MAINPID",
    ] {
        assert!(
            packaged_lines.contains(required),
            "the packaged unit lacks {required}"
        );
    }
    assert!(
        !packaged.contains("DynamicUser"),
        "the package's user is static"
    );

    // systemd-analyze checks that the Exec binaries exist: point them at the one just built. The
    // manual page it names is there once the package is installed.
    let dir = tempfile::tempdir().expect("tempdir");
    let copy = dir.path().join("ferrogate.service");
    std::fs::write(&copy, packaged.replace("/usr/bin/ferrogate", BIN)).expect("write unit");
    let output = Command::new("systemd-analyze")
        .arg("verify")
        .arg("--man=no")
        .arg(&copy)
        .output()
        .expect("systemd-analyze (scripts/setup.sh installs systemd)");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let complaints: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("ferrogate.service"))
        .collect();
    assert!(
        complaints.is_empty(),
        "systemd-analyze complaints:\n{}",
        complaints.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packaged_config_passes_check_as_installed_and_with_acme() {
    let path = repo_file("packaging/debian/ferrogate.yaml");
    let out = run_check(&path);
    assert!(
        out.status.success(),
        "ferrogate check {}:\n{}{}",
        path.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // Switch the ACME example on: the certificate line and the `acme:` section.
    let text = std::fs::read_to_string(&path).expect("config");
    let mut acme = String::new();
    let mut in_acme_section = false;
    for line in text.lines() {
        in_acme_section = line.starts_with("# acme:") || (in_acme_section && line.starts_with('#'));
        let uncommented = if line.contains("acme: { challenge") {
            line.replacen("#  -", "  -", 1)
        } else if in_acme_section {
            line.replacen("# ", "", 1)
        } else {
            line.to_string()
        };
        acme.push_str(&uncommented);
        acme.push('\n');
    }
    let acme = acme.replace("  certificates: []", "  certificates:");
    assert!(acme.contains("\nacme:\n"), "no acme: section to switch on");
    let dir = tempfile::tempdir().expect("tempdir");
    let copy = dir.path().join("ferrogate.yaml");
    std::fs::write(&copy, &acme).expect("write config");
    let out = run_check(&copy);
    assert!(
        out.status.success(),
        "ferrogate check with ACME on:\n{acme}\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("1 certificate(s)"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
