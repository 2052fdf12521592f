//! Reloads as the observability side sees them: a refused file shows on the status page (in
//! Chromium) with its file:line error and counts as a failed reload, the previous generation
//! keeps serving; a good file bumps the generation in /metrics and /status.json, and a route it
//! adds is counted under its own name.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::backends::EchoBackend;
use crate::chromium::{run_chromium, screenshot};
use crate::client::https_get;
use crate::harness::{Daemon, DaemonBuilder, DEFAULT_TIMEOUTS};
use crate::observability::{admin_get, value, wait_for_total};

/// Longest wait for the file watcher to apply (or refuse) a rewritten file.
const RELOAD_TIMEOUT: Duration = Duration::from_secs(15);

/// Polls /status.json until `done` holds for it.
async fn status_until(d: &Daemon, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + RELOAD_TIMEOUT;
    loop {
        let status: Value =
            serde_json::from_str(&admin_get(d, "/status.json").await).expect("status json");
        if done(&status) {
            return status;
        }
        assert!(Instant::now() < deadline, "{what} never showed: {status:#}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_results_reach_metrics_and_status_page() {
    let a = EchoBackend::start("a").await;
    let b = EchoBackend::start("b").await;
    let mut d = DaemonBuilder::new()
        .admin()
        .route("{ name: app, hosts: [app.test], upstream: a }")
        .upstream("a", &[a.addr], DEFAULT_TIMEOUTS)
        .upstream("b", &[b.addr], DEFAULT_TIMEOUTS)
        .start()
        .await;
    let m = admin_get(&d, "/metrics").await;
    assert_eq!(value(&m, "ferrogate_config_generation", &[]), 1.0);

    // A broken file: refused, reported with its position, generation 1 keeps serving.
    let broken = d
        .initial_yaml()
        .replace("upstream: a }", "upstream: nowhere }");
    d.replace_config(&broken);
    let status = status_until(&d, "the refused reload", |s| {
        s["reload"]["last_ok"] == false
    })
    .await;
    let errors = status["reload"]["last_errors"].to_string();
    assert!(
        errors.contains("ferrogate.yaml:") && errors.contains("nowhere"),
        "{errors}"
    );
    assert_eq!(status["generation"], 1);
    let m = admin_get(&d, "/metrics").await;
    assert!(value(&m, "ferrogate_config_reloads_total", &[("result", "error")]) >= 1.0);
    assert_eq!(value(&m, "ferrogate_config_generation", &[]), 1.0);
    assert_eq!(https_get(d.https, "app.test", "/").await.status, 200);

    let url = format!("http://{}/status", d.admin.expect("admin"));
    let dom = String::from_utf8_lossy(&run_chromium(&url, &["--dump-dom".to_string()]).stdout)
        .into_owned();
    assert!(
        dom.contains(r#"<pre class="errors err mono" id="reload-errors">"#),
        "{dom}"
    );
    assert!(dom.contains("nowhere"), "{dom}");
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("status-page");
    std::fs::create_dir_all(&dir).expect("screenshot dir");
    screenshot(&url, &dir.join("status-reload-refused.png"), 1280, 900);

    // A good file with one more route: applied, counted, shown.
    let grown = d.initial_yaml().replace(
        "routes:\n",
        "routes:\n  - { name: extra, hosts: [extra.test], upstream: b }\n",
    );
    d.replace_config(&grown);
    let status = status_until(&d, "the new route", |s| {
        s["reload"]["last_ok"] == true
            && s["routes"]
                .as_array()
                .is_some_and(|r| r.iter().any(|r| r["name"] == "extra"))
    })
    .await;
    let generation = status["generation"].as_f64().expect("generation");
    assert!(generation >= 2.0, "{status:#}");
    assert!(status["reload"]["last_errors"]
        .as_array()
        .is_some_and(|e| e.is_empty()));
    assert_eq!(https_get(d.https, "extra.test", "/").await.status, 200);
    let m = wait_for_total(&d, "ferrogate_requests_total", 2.0).await;
    assert_eq!(value(&m, "ferrogate_config_generation", &[]), generation);
    assert!(value(&m, "ferrogate_config_reloads_total", &[("result", "ok")]) >= 1.0);
    let extra = [
        ("route", "extra"),
        ("upstream", "b"),
        ("server", &*b.addr.to_string()),
        ("class", "2xx"),
    ];
    assert_eq!(value(&m, "ferrogate_requests_total", &extra), 1.0);
}
