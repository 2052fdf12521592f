//! The status page's history and GPU-pool panel through the real daemon: known traffic on two
//! routes to an echo backend and a closed port, and streamed completions to an inference
//! upstream of two GPU node simulators (`ferrogate_sim`, in-process), one slowed down. Then
//! `/status.json` carries the series (a short `admin.history.step` for the test), and headless
//! Chromium renders `/status` with an SVG sparkline per series and the same current values; the
//! slowed node shows the higher time to first token. Screenshots go to
//! `target/tmp/status-history/` (and, with `FERROGATE_UPDATE_DOC_IMAGES=1`, to `docs/images/`).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use ferrogate_sim::{Faults, SimConfig, SimHandle};
use serde_json::{json, Value};

use crate::backends::{closed_port, EchoBackend};
use crate::chromium::{run_chromium, screenshot};
use crate::client::{http_request, Request};
use crate::harness::{Daemon, DaemonBuilder, DEFAULT_TIMEOUTS};
use crate::observability::admin_get;

/// The sampler's step in this test (the default is 5 s).
const STEP: &str = "500ms";
/// Longest wait for the daemon to reach a state.
const LIMIT: Duration = Duration::from_secs(30);
/// Virtual time Chromium gives the page before dumping it: one refresh and a bit.
const REFRESH_BUDGET_MS: u32 = 6_000;
/// The slowed node's latencies are this many times the other's.
const SLOW_FACTOR: f64 = 20.0;
/// Series of a route or upstream, and of a node (as `/status.json` names them).
const TRAFFIC_SERIES: [&str; 4] = [
    "requests_per_s",
    "errors_per_s",
    "latency_p50_s",
    "latency_p99_s",
];
const NODE_SERIES: [&str; 8] = [
    "ttft_p50_s",
    "ttft_p90_s",
    "tokens_per_s",
    "running",
    "waiting",
    "kv_usage",
    "prefix_hit_rate",
    "in_flight",
];
/// The set environment variable that refreshes the screenshot under docs/images/.
const UPDATE_DOC_IMAGES: &str = "FERROGATE_UPDATE_DOC_IMAGES";

async fn gpu_node() -> SimHandle {
    ferrogate_sim::start(SimConfig {
        models: vec!["llama".into()],
        decode_ms: 2.0,
        prefill_tokens_per_sec: 10_000.0,
        default_max_tokens: 8,
        ..SimConfig::default()
    })
    .await
    .expect("start simulator")
}

async fn status(d: &Daemon) -> Value {
    serde_json::from_str(&admin_get(d, "/status.json").await).expect("status.json")
}

/// Polls `/status.json` until `done` holds.
async fn wait_for(d: &Daemon, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + LIMIT;
    loop {
        let doc = status(d).await;
        if done(&doc) {
            return doc;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {doc:#}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The latest non-null value of a series (what the page shows next to its chart).
fn latest(series: &Value) -> Option<f64> {
    series.as_array()?.iter().rev().find_map(Value::as_f64)
}

fn series<'a>(doc: &'a Value, path: &[&str]) -> &'a Value {
    path.iter().fold(&doc["history"], |v, k| &v[*k])
}

/// `key` (as the page writes it in `data-series`) → the series in the document, for every
/// series the document has.
fn every_series(doc: &Value) -> BTreeMap<String, Value> {
    let mut all = BTreeMap::new();
    let history = &doc["history"];
    for kind in ["routes", "upstreams"] {
        let prefix = kind.trim_end_matches('s');
        for (name, s) in history[kind].as_object().expect(kind) {
            for k in TRAFFIC_SERIES {
                all.insert(format!("{prefix}/{name}/{k}"), s[k].clone());
            }
        }
    }
    for (upstream, nodes) in history["nodes"].as_object().expect("nodes") {
        for (address, s) in nodes.as_object().expect("node map") {
            for k in NODE_SERIES {
                all.insert(format!("node/{upstream}/{address}/{k}"), s[k].clone());
            }
        }
    }
    for (upstream, reasons) in history["decisions"].as_object().expect("decisions") {
        for (reason, s) in reasons.as_object().expect("reasons") {
            all.insert(format!("decisions/{upstream}/{reason}"), s.clone());
        }
    }
    all
}

/// Every `data-value-of="KEY" data-value="V"` pair in the DOM (a key may appear twice: in a
/// chart's legend and in a table).
fn shown_values(dom: &str) -> Vec<(String, Option<f64>)> {
    dom.split("data-value-of=\"")
        .skip(1)
        .map(|rest| {
            let key = rest.split('"').next().unwrap_or_default().to_string();
            let value = rest
                .split("data-value=\"")
                .nth(1)
                .and_then(|v| v.split('"').next())
                .and_then(|v| v.parse().ok());
            (key, value)
        })
        .collect()
}

async fn chat(lb: SocketAddr, prompt: &str, session: Option<&str>) {
    let mut req = Request::post("gpu.test", "/v1/chat/completions")
        .header("Content-Type", "application/json");
    if let Some(session) = session {
        req = req.header("X-OpenWebUI-Chat-Id", session);
    }
    req.body = serde_json::to_vec(&json!({
        "model": "llama",
        "stream": true,
        "messages": [{"role": "user", "content": prompt}],
    }))
    .expect("json");
    let r = http_request(lb, &req).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("[DONE]"), "{}", r.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_page_charts_the_history_and_the_gpu_pool() {
    let echo = EchoBackend::start("echo").await;
    let dead = closed_port();
    let (fast, slow) = (gpu_node().await, gpu_node().await);
    slow.set_faults(Faults {
        slow_factor: SLOW_FACTOR,
        ..Faults::default()
    })
    .expect("faults");
    let d = DaemonBuilder::new()
        .admin_with(&format!("history: {{ step: {STEP} }}"))
        .extra_listener("lb", false)
        .route("{ name: app, listener: lb, hosts: [app.test], upstream: app }")
        .route("{ name: broken, listener: lb, hosts: [broken.test], upstream: dead }")
        .route("{ name: gpu, listener: lb, hosts: [gpu.test], upstream: gpu }")
        .upstream("app", &[echo.addr], DEFAULT_TIMEOUTS)
        .upstream("dead", &[dead.addr], DEFAULT_TIMEOUTS)
        .upstream_yaml(
            "gpu",
            &format!(
                "    servers: [ {{ address: {} }}, {{ address: {} }} ]\n    balance: least_inflight\n    inference: {{ engine: vllm, models: discover, refresh: 250ms }}\n",
                fast.addr(),
                slow.addr()
            ),
        )
        .start()
        .await;
    let lb = d.extra("lb");
    let (fast_addr, slow_addr) = (fast.addr().to_string(), slow.addr().to_string());

    // The sampler has its baseline and the scraper has both nodes' model lists.
    let doc = wait_for(&d, "history and models", |doc| {
        doc["history"]["points"].as_u64().is_some_and(|n| n >= 1)
            && doc["gpu_pools"][0]["models"][0]["nodes"]
                .as_array()
                .is_some_and(|n| n.len() == 2)
    })
    .await;
    assert_eq!(doc["history"]["step_ms"], 500);
    assert_eq!(doc["history"]["window_points"], 180);
    let pool = &doc["gpu_pools"][0];
    assert_eq!(pool["upstream"], "gpu");
    assert_eq!(pool["engine"], "vllm");
    assert_eq!(pool["models"][0]["model"], "llama");
    assert_eq!(doc["gpu_pools"].as_array().map(Vec::len), Some(1));

    // Known traffic: 20 answers from the echo backend, 5 failures on the closed port, 12
    // streamed completions sharing a prefix (4 of them on a session: affinity decisions).
    for _ in 0..20 {
        let r = http_request(lb, &Request::get("app.test", "/")).await;
        assert_eq!(r.status, 200);
    }
    for _ in 0..5 {
        let r = http_request(lb, &Request::get("broken.test", "/")).await;
        assert_eq!(r.status, 502, "{}", r.text());
    }
    let shared = "You are a helpful assistant that answers in one short paragraph. ".repeat(4);
    for i in 0..12 {
        let prompt = format!("{shared}Question {i}: what does the number {i} look like in words, and why does it matter to anyone at all?");
        let session = (i % 3 == 2).then_some("chat-history-test");
        chat(lb, &prompt, session).await;
    }
    let (served_fast, served_slow) = (fast.stats().totals.requests, slow.stats().totals.requests);
    assert!(
        served_fast > 0 && served_slow > 0,
        "both nodes served: {served_fast} / {served_slow}"
    );

    // Quiet again: the last point shows no traffic, nothing in flight, and both nodes were
    // scraped since. Every current value on the page is stable from here on.
    let doc = wait_for(&d, "a quiet last point", |doc| {
        let node = |address: &str, k: &str| latest(series(doc, &["nodes", "gpu", address, k]));
        let quiet = ["app", "broken", "gpu"]
            .iter()
            .all(|r| latest(series(doc, &["routes", r, "requests_per_s"])) == Some(0.0));
        quiet
            && [&fast_addr, &slow_addr].iter().all(|a| {
                node(a, "ttft_p50_s").is_some()
                    && node(a, "running") == Some(0.0)
                    && node(a, "in_flight") == Some(0.0)
                    && node(a, "tokens_per_s") == Some(0.0)
            })
    })
    .await;

    // What the series say about the traffic.
    let max = |path: &[&str]| {
        series(&doc, path)
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_f64)
            .fold(0.0_f64, f64::max)
    };
    assert!(max(&["routes", "app", "requests_per_s"]) > 0.0, "{doc:#}");
    assert_eq!(max(&["routes", "app", "errors_per_s"]), 0.0);
    assert!(max(&["routes", "broken", "errors_per_s"]) > 0.0, "{doc:#}");
    assert!(max(&["upstreams", "dead", "errors_per_s"]) > 0.0, "{doc:#}");
    assert!(latest(series(&doc, &["routes", "app", "latency_p50_s"])).is_some());
    let ttft = |address: &str| {
        latest(series(&doc, &["nodes", "gpu", address, "ttft_p50_s"])).expect("ttft")
    };
    assert!(
        ttft(&slow_addr) > ttft(&fast_addr),
        "the slowed node's TTFT {} is not above {}",
        ttft(&slow_addr),
        ttft(&fast_addr)
    );
    for address in [&fast_addr, &slow_addr] {
        assert!(
            max(&["nodes", "gpu", address, "tokens_per_s"]) > 0.0,
            "{doc:#}"
        );
    }
    // Every routing decision of the traffic is in the window, by reason.
    let decisions = doc["gpu_pools"][0]["decisions"]
        .as_array()
        .expect("decisions");
    let total: u64 = decisions
        .iter()
        .filter_map(|x| x["in_window"].as_u64())
        .sum();
    assert_eq!(total, 12, "{decisions:#?}");
    let reasons: Vec<&str> = decisions
        .iter()
        .filter_map(|x| x["reason"].as_str())
        .collect();
    assert!(
        reasons.contains(&"affinity") && reasons.contains(&"least_load"),
        "{reasons:?}"
    );

    // The page, after a refresh from /status.json.
    let admin = d.admin.expect("admin");
    let url = format!("http://{admin}/status");
    let dom_args = [
        "--dump-dom".to_string(),
        format!("--virtual-time-budget={REFRESH_BUDGET_MS}"),
    ];
    let dom = String::from_utf8_lossy(&run_chromium(&url, &dom_args).stdout).into_owned();
    let doc = status(&d).await;
    let every = every_series(&doc);
    assert!(every.len() >= 3 * 4 + 3 * 4 + 2 * 8 + 2, "{every:#?}");
    for key in every.keys() {
        assert!(
            dom.contains(&format!("data-series=\"{key}\"")),
            "no sparkline for {key} in the page:\n{dom}"
        );
    }
    let sparklines = dom.matches("<svg class=\"spark\"").count();
    assert!(
        sparklines >= every.len(),
        "{sparklines} sparklines for {} series",
        every.len()
    );
    for needle in [
        "data-chart=\"Requests per second by route\"".to_string(),
        "data-chart=\"Time to first token p90 by node\"".to_string(),
        format!("data-line=\"node/gpu/{slow_addr}/ttft_p90_s\""),
        "<section data-gpu-pool=\"gpu\">".to_string(),
        format!("data-gpu-node=\"{fast_addr}\""),
        format!("data-gpu-node=\"{slow_addr}\""),
        "<tr data-model=\"llama\">".to_string(),
        "<section id=\"traffic\" data-step-ms=\"500\">".to_string(),
    ] {
        assert!(dom.contains(&needle), "the page lacks {needle}:\n{dom}");
    }
    for decision in decisions {
        let needle = format!(
            "data-decision=\"{}\" data-count=\"{}\"",
            decision["reason"].as_str().expect("reason"),
            decision["in_window"]
        );
        assert!(dom.contains(&needle), "the page lacks {needle}");
    }

    // The values shown next to the charts are the document's latest values.
    let shown = shown_values(&dom);
    assert!(shown.len() >= every.len(), "{} values shown", shown.len());
    for (key, value) in &shown {
        let expected = every
            .get(key)
            .unwrap_or_else(|| panic!("the page shows {key}, which /status.json lacks"));
        let expected = latest(expected);
        match (value, expected) {
            (Some(v), Some(e)) => assert!(
                (v - e).abs() <= 1e-6 * e.abs().max(1.0),
                "{key}: the page shows {v}, /status.json says {e}"
            ),
            (None, None) => {}
            _ => panic!("{key}: the page shows {value:?}, /status.json says {expected:?}"),
        }
    }
    let shown_ttft = |address: &str| {
        let key = format!("node/gpu/{address}/ttft_p50_s");
        shown
            .iter()
            .find(|(k, _)| *k == key)
            .and_then(|(_, v)| *v)
            .unwrap_or_else(|| panic!("no TTFT shown for {address}"))
    };
    assert!(shown_ttft(&slow_addr) > shown_ttft(&fast_addr));

    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("status-history");
    std::fs::create_dir_all(&dir).expect("screenshot dir");
    screenshot(&url, &dir.join("status-history-desktop.png"), 1280, 2600);
    screenshot(&url, &dir.join("status-history-phone.png"), 390, 5200);
    eprintln!("status history screenshots in {}", dir.display());
    if std::env::var_os(UPDATE_DOC_IMAGES).is_some() {
        // The top of the page (traffic and the GPU pool) for docs/observability.md.
        let top = dir.join("status-history-top.png");
        screenshot(&url, &top, 1280, 1700);
        let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/images");
        std::fs::create_dir_all(&docs).expect("docs/images");
        std::fs::copy(&top, docs.join("status-history.png")).expect("copy screenshot");
    }
}
