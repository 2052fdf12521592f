//! The status page in real headless Chromium: after a backend process is killed, the server it
//! ran is shown down (passively, from the connection failures the proxy saw) next to one that is
//! up, with its recent error, the routes and the certificate, after the page has refreshed itself
//! from /status.json. Screenshots at desktop and phone widths are saved under
//! `target/tmp/status-page/`. Chromium is required: without it this test fails (scripts/setup.sh
//! installs it). The killed backend is `ferrogate demo-backend`, so the test needs the `demo`
//! feature.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::backends::EchoBackend;
use crate::chromium::{run_chromium, screenshot};
use crate::client::https_get;
use crate::harness::sockets::tcp_listening;
use crate::harness::{Daemon, DaemonBuilder, BIN, DEFAULT_TIMEOUTS};
use crate::observability::admin_get;

/// Virtual time Chromium gives the page before dumping it: two refresh periods and a bit.
const REFRESH_BUDGET_MS: u32 = 12_000;
/// Longest wait for in-flight counts to return to zero.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest wait for the backend process to listen.
const BACKEND_START_TIMEOUT: Duration = Duration::from_secs(10);

/// A backend in its own process (`ferrogate demo-backend`), so the test can kill it for real.
struct BackendProcess {
    child: Child,
    addr: SocketAddr,
}

impl BackendProcess {
    /// Started on 127.0.0.1:0; its address is the one the process then listens on.
    async fn start() -> Self {
        let mut child = Command::new(BIN)
            .args(["demo-backend", "--listen", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start demo-backend");
        let deadline = Instant::now() + BACKEND_START_TIMEOUT;
        let addr = loop {
            if let Some(addr) = tcp_listening(child.id()).first() {
                break *addr;
            }
            if let Some(status) = child.try_wait().expect("try_wait") {
                panic!("demo-backend exited during start-up with {status}");
            }
            assert!(Instant::now() < deadline, "demo-backend did not listen");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        Self { child, addr }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for BackendProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// /status.json once no request is in flight any more: a request leaves its server's in-flight
/// count when its logging phase ends, just after the client has the response.
async fn settled_status(d: &Daemon) -> Value {
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    loop {
        let status: Value =
            serde_json::from_str(&admin_get(d, "/status.json").await).expect("status json");
        let busy = status["upstreams"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|u| u["servers"].as_array().into_iter().flatten())
            .any(|s| s["in_flight"] != 0);
        if !busy {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "requests stayed in flight: {status:#}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The server `address` of upstream `upstream` in a status document.
fn server<'a>(status: &'a Value, upstream: &str, address: &str) -> &'a Value {
    status["upstreams"]
        .as_array()
        .and_then(|ups| ups.iter().find(|u| u["name"] == upstream))
        .and_then(|u| u["servers"].as_array())
        .and_then(|servers| servers.iter().find(|s| s["address"] == address))
        .unwrap_or_else(|| panic!("no server {address} in upstream {upstream}: {status:#}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_page_in_chromium_shows_a_killed_backend_down() {
    let steady = EchoBackend::start("steady").await;
    let mut doomed = BackendProcess::start().await;
    let d = DaemonBuilder::new()
        .admin()
        .certificate("chat", &["app.test"])
        .route("{ name: app, hosts: [app.test], upstream: app }")
        .route("{ name: api, hosts: [app.test], path_prefix: /v1/, upstream: app }")
        .upstream("app", &[steady.addr, doomed.addr], DEFAULT_TIMEOUTS)
        .start()
        .await;
    let (up_addr, down_addr) = (steady.addr.to_string(), doomed.addr.to_string());

    for _ in 0..4 {
        assert_eq!(https_get(d.https, "app.test", "/").await.status, 200);
    }
    assert_eq!(steady.count(), 2, "round robin sends half to each");
    let status: Value = serde_json::from_str(&admin_get(&d, "/status.json").await).expect("json");
    assert_eq!(server(&status, "app", &down_addr)["state"], "up");

    doomed.kill();
    // Every request still succeeds: a refused connection is retried on the other server.
    for _ in 0..4 {
        assert_eq!(https_get(d.https, "app.test", "/").await.status, 200);
    }
    assert_eq!(steady.count(), 6);

    let status = settled_status(&d).await;
    let down = server(&status, "app", &down_addr);
    assert_eq!(down["state"], "down", "{down:#}");
    assert_eq!(down["state_source"], "passive");
    assert_eq!(
        down["recent_errors"][0]["kind"], "ConnectRefused",
        "{down:#}"
    );
    assert!(
        down["connect_errors"].as_u64().is_some_and(|n| n >= 2),
        "{down:#}"
    );
    assert_eq!(server(&status, "app", &up_addr)["state"], "up");
    assert_eq!(server(&status, "app", &up_addr)["in_flight"], 0);
    assert_eq!(status["certificates"][0]["name"], "chat");
    assert!(status["certificates"][0]["expires_in_seconds"]
        .as_i64()
        .is_some_and(|s| s > 0));

    let admin = d.admin.expect("admin");
    let url = format!("http://{admin}/status");
    // Virtual time runs the page's 5 s refresh twice: the DOM checked below is the one rebuilt
    // from /status.json fetches, not only the one embedded in the page.
    let dom_args = [
        "--dump-dom".to_string(),
        format!("--virtual-time-budget={REFRESH_BUDGET_MS}"),
    ];
    let dom = String::from_utf8_lossy(&run_chromium(&url, &dom_args).stdout).into_owned();
    let renders: u32 = dom
        .split("data-renders=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no data-renders in the page:\n{dom}"));
    assert!(
        renders >= 2,
        "the page did not refresh itself (renders={renders})"
    );
    for needle in [
        format!(r#"<tr data-server="{down_addr}" data-state="down">"#),
        format!(r#"<tr data-server="{up_addr}" data-state="up">"#),
        "ConnectRefused".to_string(),
        r#"<section data-upstream="app">"#.to_string(),
        r#"<tr data-route="app">"#.to_string(),
        r#"<tr data-route="api">"#.to_string(),
        r#"<tr data-certificate="chat">"#.to_string(),
        "1 down".to_string(),
        "live · updated".to_string(),
    ] {
        assert!(
            dom.contains(&needle),
            "the rendered page lacks {needle}:\n{dom}"
        );
    }

    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("status-page");
    std::fs::create_dir_all(&dir).expect("screenshot dir");
    screenshot(&url, &dir.join("status-desktop.png"), 1280, 1000);
    screenshot(&url, &dir.join("status-phone.png"), 390, 1700);
    eprintln!("status page screenshots in {}", dir.display());
}
