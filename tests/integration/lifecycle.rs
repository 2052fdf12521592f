//! Process lifecycle against the real daemon: graceful SIGTERM (a long request completes, new
//! connections are refused, exit 0), READY=1 over NOTIFY_SOCKET, the SIGUSR2 binary upgrade under
//! load with zero failed requests, a start refused when a listener's address is taken, the
//! process kept off transparent huge pages, and the systemd unit and container files.

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::backends::{slow_server, EchoBackend};
use crate::client::{http_get, http_request, Request};
use crate::harness::{send_signal, DaemonBuilder, BIN};

const SLOW_RESPONSE: Duration = Duration::from_secs(2);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_a_long_request_finish_then_exits_zero() {
    let slow = slow_server(SLOW_RESPONSE).await;
    let mut d = DaemonBuilder::new()
        .extra_listener("plain", false)
        .route("{ name: slow, hosts: [slow.test], listener: plain, upstream: slow }")
        .upstream("slow", &[slow], "{ connect: 1s, read: 10s }")
        .yaml("shutdown: { grace_period: 8s }")
        .start()
        .await;
    let plain = d.extra("plain");
    let long = tokio::spawn(async move { http_get(plain, "slow.test", "/").await });
    tokio::time::sleep(Duration::from_millis(300)).await;

    let stopped_at = Instant::now();
    d.signal("TERM");
    // New connections are refused once the listeners close.
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        if tokio::net::TcpStream::connect(plain).await.is_err() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still accepting new connections after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let response = long.await.expect("the long request completed");
    assert_eq!(response.status, 200);
    assert_eq!(response.text(), "slow\n");
    let status = d
        .wait_exit(Duration::from_secs(8))
        .expect("exited within the grace period");
    assert_eq!(status.code(), Some(0), "{}", d.log());
    assert!(
        stopped_at.elapsed() < Duration::from_secs(8),
        "waited for the whole grace period instead of the last request"
    );
    assert!(d.log().contains("drained: no request in flight"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_is_sent_to_notify_socket_once_listening() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).expect("bind notify socket");
    socket
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let backend = EchoBackend::start("a").await;
    let d = DaemonBuilder::new()
        .admin()
        .route("{ name: a, hosts: [a.test], upstream: a }")
        .upstream("a", &[backend.addr], "{ connect: 1s, read: 5s }")
        .env("NOTIFY_SOCKET", socket_path.to_str().expect("utf-8 path"))
        .start()
        .await;
    let mut buf = [0u8; 512];
    // Start attempts the harness killed (a listener address was taken) may have notified too.
    let message = loop {
        let n = socket.recv(&mut buf).expect("a notification");
        let message = String::from_utf8_lossy(&buf[..n]).into_owned();
        let from_discarded = message.lines().any(|line| {
            d.discarded_pids
                .iter()
                .any(|pid| line == format!("MAINPID={pid}"))
        });
        if !from_discarded {
            break message;
        }
    };
    assert!(message.contains("READY=1"), "{message}");
    assert!(
        message.contains(&format!("MAINPID={}", d.pid())),
        "{message}"
    );
    let ready = http_get(d.admin.expect("admin"), "admin", "/readyz").await;
    assert_eq!(ready.status, 200);
}

/// Kills the process named by a pid file when dropped (the upgraded daemon is not our child).
struct PidFileGuard(std::path::PathBuf);

impl Drop for PidFileGuard {
    fn drop(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(&self.0) {
            let _ = Command::new("kill").arg(pid.trim()).status();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigusr2_binary_upgrade_under_load_fails_no_request() {
    let backend = EchoBackend::start("a").await;
    let mut d = DaemonBuilder::new()
        .extra_listener("plain", false)
        .route("{ name: a, hosts: [a.test], listener: plain, upstream: a }")
        .upstream("a", &[backend.addr], "{ connect: 1s, read: 5s }")
        .start()
        .await;
    let pid_file = d.dir().join("state").join("ferrogate.pid");
    let _cleanup = PidFileGuard(pid_file.clone());
    let old_pid = d.pid();
    let plain = d.extra("plain");

    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let load = {
        let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
        tokio::spawn(async move {
            for _ in 0..20_000 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let request = tokio::spawn(async move { http_get(plain, "a.test", "/").await });
                match request.await {
                    Ok(r) if r.status == 200 => ok.fetch_add(1, Ordering::Relaxed),
                    _ => failed.fetch_add(1, Ordering::Relaxed),
                };
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    d.signal("USR2");

    // The old process hands the sockets over and exits; the new one writes the pid file.
    let status = d
        .wait_exit(Duration::from_secs(20))
        .expect("the old process exited after the hand-over");
    assert_eq!(status.code(), Some(0));
    let deadline = Instant::now() + Duration::from_secs(10);
    let new_pid = loop {
        let pid: Option<u32> = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|p| p.trim().parse().ok());
        if let Some(pid) = pid.filter(|p| *p != old_pid) {
            break pid;
        }
        assert!(Instant::now() < deadline, "no new process wrote its pid");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    load.await.expect("load task");
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    assert_eq!(
        failed, 0,
        "requests failed during the upgrade ({ok} succeeded)"
    );
    assert!(ok > 50, "only {ok} requests made");
    let after = http_request(plain, &Request::get("a.test", "/")).await;
    assert_eq!(after.status, 200, "the new process serves");
    send_signal(new_pid, "TERM");
}

fn repo_file(relative: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

#[test]
fn systemd_unit_verifies() {
    let unit = std::fs::read_to_string(repo_file("systemd/ferrogate.service")).expect("unit file");
    for required in [
        "Type=notify",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "Restart=on-failure",
        "DynamicUser=yes",
        "AmbientCapabilities=CAP_NET_BIND_SERVICE",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "StateDirectory=ferrogate",
        "ConfigurationDirectory=ferrogate",
        "LimitNOFILE=",
    ] {
        assert!(unit.contains(required), "unit lacks {required}");
    }
    // systemd-analyze checks that ExecStart binaries exist: point them at the one just built.
    let dir = tempfile::tempdir().expect("tempdir");
    let copy = dir.path().join("ferrogate.service");
    std::fs::write(
        &copy,
        unit.replace("/usr/local/bin/ferrogate", crate::harness::BIN),
    )
    .expect("write unit copy");
    let output = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&copy)
        .output()
        .expect("systemd-analyze (scripts/setup.sh installs systemd)");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let complaints: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("ferrogate.service"))
        .collect();
    assert!(output.status.success(), "{stderr}");
    assert!(
        complaints.is_empty(),
        "systemd-analyze complaints:\n{}",
        complaints.join("\n")
    );
}

/// Instructions of a Containerfile, in order, with their arguments (line continuations joined).
fn container_instructions(text: &str) -> Vec<(String, String)> {
    let mut joined = String::new();
    let mut out = Vec::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if joined.is_empty() && (trimmed.is_empty() || trimmed.starts_with('#')) {
            continue;
        }
        if let Some(part) = trimmed.strip_suffix('\\') {
            joined.push_str(part);
            joined.push(' ');
            continue;
        }
        joined.push_str(trimmed);
        let (instruction, args) = joined.split_once(' ').unwrap_or((&joined, ""));
        out.push((instruction.to_ascii_uppercase(), args.trim().to_string()));
        joined.clear();
    }
    out
}

/// No container engine runs on the test machines, so the Containerfile is checked for shape:
/// known instructions only, a build stage and a small runtime stage, a non-root user, the state
/// volume, the default config path and a health check on /healthz (through `ferrogate health`);
/// the daemon built from the whole workspace, without the demo, by the release build script.
#[test]
fn containerfile_is_well_formed() {
    const KNOWN: &[&str] = &[
        "FROM",
        "RUN",
        "COPY",
        "ADD",
        "ENV",
        "ARG",
        "WORKDIR",
        "USER",
        "EXPOSE",
        "VOLUME",
        "ENTRYPOINT",
        "CMD",
        "HEALTHCHECK",
        "LABEL",
        "STOPSIGNAL",
        "SHELL",
    ];
    let text = std::fs::read_to_string(repo_file("Containerfile")).expect("Containerfile");
    let instructions = container_instructions(&text);
    for (instruction, args) in &instructions {
        assert!(
            KNOWN.contains(&instruction.as_str()),
            "unknown instruction {instruction} {args}"
        );
    }
    let stages: Vec<&String> = instructions
        .iter()
        .filter(|(i, _)| i == "FROM")
        .map(|(_, a)| a)
        .collect();
    assert!(stages.len() >= 2, "multi-stage build expected: {stages:?}");
    assert!(
        stages[0].contains(" AS build"),
        "first stage named build: {}",
        stages[0]
    );
    let has = |instruction: &str, needle: &str| {
        instructions
            .iter()
            .any(|(i, a)| i == instruction && a.contains(needle))
    };
    assert!(
        has("COPY", "--from=build"),
        "runtime copies the binary from the build stage"
    );
    assert!(
        has("USER", "ferrogate") || has("USER", "65532"),
        "runs as a non-root user"
    );
    assert!(has("VOLUME", "/var/lib/ferrogate"), "state volume");
    // `ferrogate health` asks the admin listener's /healthz (no curl in the image).
    assert!(
        has("HEALTHCHECK", "\"health\", \"--admin\""),
        "health check through `ferrogate health`"
    );
    assert!(
        has("CMD", "/etc/ferrogate/ferrogate.yaml")
            || has("ENTRYPOINT", "/etc/ferrogate/ferrogate.yaml")
    );
    assert!(has("STOPSIGNAL", "SIGTERM"));
    // Cargo loads every workspace member's manifest, even to build only the daemon.
    assert!(
        has("COPY", "sim sim"),
        "the build copies the workspace member sim/"
    );
    assert!(
        has("RUN", "--no-default-features"),
        "the image is built without the demo feature"
    );
    // Profile-guided like the Debian package: the build script and its training run.
    assert!(
        has("COPY", "scripts scripts") && has("RUN", "scripts/build-release.sh"),
        "the image's binary is built by scripts/build-release.sh"
    );
}

/// The Kubernetes example's ConfigMap carries a configuration that `ferrogate check` accepts.
#[test]
fn kubernetes_example_config_passes_check() {
    let text = std::fs::read_to_string(repo_file("conf/kubernetes.yaml")).expect("example");
    let mut kinds = Vec::new();
    let mut embedded = None;
    for document in serde_yaml::Deserializer::from_str(&text) {
        let value: serde_yaml::Value =
            serde::Deserialize::deserialize(document).expect("valid YAML document");
        let kind = value["kind"].as_str().unwrap_or_default().to_string();
        if kind == "ConfigMap" {
            embedded = value["data"]["ferrogate.yaml"].as_str().map(str::to_string);
        }
        kinds.push(kind);
    }
    for kind in ["ConfigMap", "Deployment", "Service"] {
        assert!(kinds.iter().any(|k| k == kind), "missing {kind}: {kinds:?}");
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("ferrogate.yaml");
    std::fs::write(&path, embedded.expect("ConfigMap data ferrogate.yaml")).expect("write");
    let output = crate::harness::run_check(&path);
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn a_listener_address_in_use_stops_the_start_naming_the_listener() {
    let held = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let taken = held.local_addr().expect("addr");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("ferrogate.yaml");
    std::fs::write(
        &path,
        format!(
            "state_dir: {}\nlisteners:\n  http: {taken}\nroutes:\n  - {{ name: a, upstream: a }}\nupstreams:\n  a: {{ servers: [ {{ address: 127.0.0.1:9 }} ] }}\n",
            dir.path().join("state").display()
        ),
    )
    .expect("write config");
    let mut child = Command::new(BIN)
        .args(["run", "--config"])
        .arg(&path)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn ferrogate");
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("ferrogate kept running although {taken} was taken");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut stderr)
        .expect("read stderr");
    assert!(!status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("listener http cannot listen on {taken}")),
        "{stderr}"
    );
    assert!(stderr.contains("in use"), "{stderr}");
    drop(held);
}

/// The daemon keeps its memory off transparent huge pages (mimalloc's 2 MiB segments would
/// otherwise let an idle connection's few KiB pin a huge page on hosts set to `always`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_runs_without_transparent_huge_pages() {
    let backend = EchoBackend::start("a").await;
    let d = DaemonBuilder::new()
        .extra_listener("plain", false)
        .route("{ name: a, listener: plain, upstream: a }")
        .upstream("a", &[backend.addr], "{ connect: 1s, read: 5s }")
        .start()
        .await;
    let status = std::fs::read_to_string(format!("/proc/{}/status", d.pid())).expect("status");
    let thp = status
        .lines()
        .find_map(|l| l.strip_prefix("THP_enabled:"))
        .map(str::trim);
    assert_eq!(thp, Some("0"), "{status}");
    let response = http_get(d.extra("plain"), "a.test", "/").await;
    assert_eq!(response.status, 200);
}
