//! The Grafana dashboard `contrib/grafana/ferrogate.json` against the real daemon: every PromQL
//! query in it (panels, variables, annotations) parses, and every metric it reads is a family the
//! daemon's `/metrics` exports (its `# TYPE` lines) once traffic of each kind has passed: proxied
//! requests, a connection error and a retry, an edge refusal, a failed TLS handshake, a reload, a
//! failed ACME order, and an inference pool with a simulated GPU node beside a node that is down.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ferrogate_sim::{self as sim, SimConfig};
use promql_parser::parser::Expr;
use promql_parser::util::{walk_expr, ExprVisitor};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::backends::{closed_port, slow_server, ClosedPort, EchoBackend};
use crate::client::{http_request, Request};
use crate::harness::{Daemon, DaemonBuilder, DEFAULT_TIMEOUTS};
use crate::observability::admin_get;

/// The dashboard, from the repository root.
const DASHBOARD: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/contrib/grafana/ferrogate.json"
);

/// How long the scraped families may take to appear (the inference scraper reads every 100 ms,
/// a request is counted when it ends).
const FAMILIES_TIMEOUT: Duration = Duration::from_secs(20);

/// The model the simulated node serves.
const MODEL: &str = "sim-model";

/// How long the `slow` upstream's one server takes to answer: long enough for the requests sent
/// with the first to find it busy and its one-place queue taken.
const SLOW_ANSWER: Duration = Duration::from_secs(2);

/// One PromQL expression of the dashboard and where it is.
#[derive(Debug)]
struct Query {
    /// `panel "TITLE"`, `variable NAME` or `annotation NAME`.
    place: String,
    expr: String,
}

/// Every panel target (rows' nested panels included), every query variable's metric selector
/// and every annotation query.
fn dashboard_queries(dashboard: &Value) -> Vec<Query> {
    let mut out = Vec::new();
    collect_panel_queries(&dashboard["panels"], &mut out);
    for variable in dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if variable["type"] != "query" {
            continue;
        }
        let name = variable["name"].as_str().unwrap_or("?");
        // What Grafana runs: `query` (a string, or an object holding it); `definition` is shown.
        let definition = variable["query"]
            .as_str()
            .or_else(|| variable["query"]["query"].as_str())
            .or_else(|| variable["definition"].as_str())
            .unwrap_or_else(|| panic!("variable {name} has no query"));
        out.push(Query {
            place: format!("variable {name}"),
            expr: label_values_selector(definition).unwrap_or_else(|| {
                panic!("variable {name}: not label_values(SELECTOR, LABEL): {definition}")
            }),
        });
    }
    for annotation in dashboard["annotations"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if let Some(expr) = annotation["expr"].as_str() {
            out.push(Query {
                place: format!("annotation {}", annotation["name"].as_str().unwrap_or("?")),
                expr: expr.to_string(),
            });
        }
    }
    out
}

fn collect_panel_queries(panels: &Value, out: &mut Vec<Query>) {
    for panel in panels.as_array().into_iter().flatten() {
        let title = panel["title"].as_str().unwrap_or("?");
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"]
                .as_str()
                .unwrap_or_else(|| panic!("panel {title:?}: a target without expr"));
            out.push(Query {
                place: format!("panel {title:?}"),
                expr: expr.to_string(),
            });
        }
        collect_panel_queries(&panel["panels"], out);
    }
}

/// `SELECTOR` of Grafana's `label_values(SELECTOR, LABEL)`.
fn label_values_selector(definition: &str) -> Option<String> {
    let inner = definition
        .trim()
        .strip_prefix("label_values(")?
        .strip_suffix(')')?;
    let (selector, _label) = inner.rsplit_once(',')?;
    Some(selector.trim().to_string())
}

/// Grafana's interval macros (`$__rate_interval`, `$__interval`, `$__range`) stand in range
/// selectors; PromQL parsers want a duration there.
fn without_grafana_macros(expr: &str) -> String {
    let mut out = String::with_capacity(expr.len());
    let mut rest = expr;
    while let Some(at) = rest.find("$__") {
        out.push_str(&rest[..at]);
        rest = &rest[at + 3..];
        let end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        out.push_str("5m");
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// Collects the metric name of every selector.
struct SelectorNames {
    names: BTreeSet<String>,
}

impl ExprVisitor for SelectorNames {
    type Error = String;

    fn pre_visit(&mut self, expr: &Expr) -> Result<bool, String> {
        let selector = match expr {
            Expr::VectorSelector(vs) => vs,
            Expr::MatrixSelector(ms) => &ms.vs,
            _ => return Ok(true),
        };
        let name = selector.name.clone().or_else(|| {
            selector
                .matchers
                .matchers
                .iter()
                .find(|m| m.name == "__name__")
                .map(|m| m.value.clone())
        });
        match name {
            Some(name) => {
                self.names.insert(name);
                Ok(true)
            }
            None => Err(format!("a selector without a metric name: {selector}")),
        }
    }
}

/// The metric names `expr` reads, or why it does not parse.
fn metric_names(expr: &str) -> Result<BTreeSet<String>, String> {
    let ast = promql_parser::parser::parse(&without_grafana_macros(expr))?;
    let mut visitor = SelectorNames {
        names: BTreeSet::new(),
    };
    walk_expr(&mut visitor, &ast)?;
    Ok(visitor.names)
}

/// `name → type` of every `# TYPE` line.
fn exported_families(exposition: &str) -> BTreeMap<String, String> {
    exposition
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_once(' '))
        .map(|(name, kind)| (name.to_string(), kind.trim().to_string()))
        .collect()
}

/// Whether `name` is a series of an exported family: the family itself, or a histogram's
/// `_bucket`/`_sum`/`_count` (a summary's `_sum`/`_count`).
fn is_exported(name: &str, families: &BTreeMap<String, String>) -> bool {
    if families.contains_key(name) {
        return true;
    }
    [
        ("_bucket", &["histogram"][..]),
        ("_sum", &["histogram", "summary"][..]),
        ("_count", &["histogram", "summary"][..]),
    ]
    .iter()
    .any(|(suffix, kinds)| {
        name.strip_suffix(suffix)
            .and_then(|family| families.get(family))
            .is_some_and(|kind| kinds.contains(&kind.as_str()))
    })
}

/// `place: metric` for every metric a query reads that `/metrics` does not export.
fn missing(
    read: &BTreeMap<String, BTreeSet<String>>,
    families: &BTreeMap<String, String>,
) -> Vec<String> {
    read.iter()
        .flat_map(|(place, names)| {
            names
                .iter()
                .filter(|n| !is_exported(n, families))
                .map(move |n| format!("{place}: {n}"))
        })
        .collect()
}

async fn chat(addr: SocketAddr, model: &str, prompt: &str) -> u16 {
    let mut req =
        Request::post("lb.test", "/v1/chat/completions").header("Content-Type", "application/json");
    req.body = serde_json::to_vec(&json!({
        "model": model,
        "stream": true,
        "messages": [{"role": "user", "content": prompt}],
    }))
    .expect("json");
    http_request(addr, &req).await.status
}

/// A daemon with every kind of traffic a panel reads: see the module documentation.
/// The closed ports stay closed while the returned guards live.
async fn busy_daemon() -> (Daemon, sim::SimHandle, [ClosedPort; 2]) {
    let web = EchoBackend::start("web").await;
    let node = sim::start(SimConfig {
        models: vec![MODEL.to_string()],
        decode_ms: 1.0,
        prefill_tokens_per_sec: 1_000_000.0,
        default_max_tokens: 8,
        ..SimConfig::default()
    })
    .await
    .expect("start simulator");
    let down_port = closed_port();
    let down = down_port.addr;
    let slow = slow_server(SLOW_ANSWER).await;
    let nowhere = closed_port();
    let acme_directory = format!("https://{}/dir", nowhere.addr);
    let d = DaemonBuilder::new()
        .admin()
        .extra_listener("lb", false)
        .route("{ name: web, listener: lb, hosts: [web.test], upstream: web }")
        .route("{ name: guarded, listener: lb, hosts: [guarded.test], upstream: web, deny: [127.0.0.0/8] }")
        .route("{ name: gpu, listener: lb, hosts: [lb.test], path_prefix: /v1/, upstream: gpu }")
        .route("{ name: slow, listener: lb, hosts: [slow.test], upstream: slow }")
        // A dead server beside `web`: round robin tries it, fails to connect and retries.
        .upstream("web", &[down, web.addr], DEFAULT_TIMEOUTS)
        .upstream_yaml(
            "gpu",
            &format!(
                "    servers: [ {{ address: {} }} ]\n    balance: cache_aware\n    inference: {{ engine: vllm, models: discover, refresh: 100ms }}\n",
                node.addr()
            ),
        )
        .upstream_yaml(
            "slow",
            &format!(
                "    servers: [ {{ address: {slow}, max_inflight: 1 }} ]\n    queue: {{ size: 1, timeout: 10s }}\n    retries: 0\n"
            ),
        )
        .upstream_yaml(
            "gpu_down",
            &format!(
                "    servers: [ {{ address: {down} }} ]\n    inference: {{ engine: vllm, models: discover, refresh: 100ms }}\n"
            ),
        )
        .acme_certificate("{ name: issued, domains: [issued.test], acme: { challenge: http-01 } }")
        .yaml(&format!(
            "acme: {{ directory: \"{acme_directory}\", retry_min: 1h }}\n"
        ))
        .start()
        .await;
    (d, node, [down_port, nowhere])
}

/// Sends what makes every family the dashboard reads appear.
async fn drive_traffic(d: &Daemon) {
    let lb = d.extra("lb");
    for _ in 0..4 {
        let r = http_request(lb, &Request::get("web.test", "/")).await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let r = http_request(lb, &Request::get("guarded.test", "/")).await;
    assert_eq!(r.status, 403, "{}", r.text());
    // One server taking one request at a time and a queue of one: of four requests at once one
    // is served, one waits and the others are refused.
    let slow_request = Request::get("slow.test", "/");
    let statuses =
        futures_util::future::join_all((0..4).map(|_| http_request(lb, &slow_request))).await;
    let refused = statuses.iter().filter(|r| r.status == 503).count();
    assert!(
        refused >= 1,
        "no request refused by the full queue: {:?}",
        statuses.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    // The node's models are discovered by the scraper: wait until it routes.
    let deadline = Instant::now() + FAMILIES_TIMEOUT;
    while chat(lb, MODEL, "hello").await != 200 {
        assert!(
            Instant::now() < deadline,
            "the inference pool never served {MODEL}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Prompts sharing a long prefix: cache_aware predicts the node holds it.
    let shared = "You are a careful assistant. ".repeat(100);
    for i in 0..3 {
        assert_eq!(
            chat(lb, MODEL, &format!("{shared} question {i}")).await,
            200
        );
    }
    assert_eq!(chat(lb, "no-such-model", "hello").await, 404);
    // A TLS listener given plain text: a failed handshake, refused before any request.
    let mut tcp = TcpStream::connect(d.https).await.expect("connect https");
    tcp.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let mut sink = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut sink)).await;
    let admin = d.admin.expect("admin");
    let r = http_request(admin, &Request::post("localhost", "/reload")).await;
    assert_eq!(r.status, 200, "POST /reload: {}", r.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_reads_only_exported_metrics() {
    let text = std::fs::read_to_string(DASHBOARD).expect("read the dashboard");
    let dashboard: Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    let queries = dashboard_queries(&dashboard);
    assert!(queries.len() > 20, "only {} queries found", queries.len());
    // Metric names by panel, variable or annotation.
    let mut read: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut unparsable = Vec::new();
    for q in &queries {
        match metric_names(&q.expr) {
            Ok(names) if names.is_empty() => {
                unparsable.push(format!("{}: reads no metric: {}", q.place, q.expr))
            }
            Ok(names) => read.entry(q.place.clone()).or_default().extend(names),
            Err(e) => unparsable.push(format!("{}: {e}: {}", q.place, q.expr)),
        }
    }
    assert!(
        unparsable.is_empty(),
        "queries that do not parse:\n{}",
        unparsable.join("\n")
    );

    let (d, _node, _closed) = busy_daemon().await;
    drive_traffic(&d).await;
    let deadline = Instant::now() + FAMILIES_TIMEOUT;
    loop {
        let families = exported_families(&admin_get(&d, "/metrics").await);
        let absent = missing(&read, &families);
        if absent.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the dashboard reads metrics /metrics does not export:\n{}\nexported: {:?}",
            absent.join("\n"),
            families.keys().collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[test]
fn metric_names_are_read_from_selectors_only() {
    let names = metric_names(
        r#"histogram_quantile(0.9, sum by (upstream, le) (rate(a_bucket{job=~"$job"}[$__rate_interval]))) / on (upstream) group_left b_total"#,
    )
    .expect("parses");
    assert_eq!(
        names,
        BTreeSet::from(["a_bucket".to_string(), "b_total".to_string()])
    );
    assert!(metric_names("sum(rate(x[5m]) by").is_err());
    assert!(metric_names(r#"{job="a"}"#).is_err());
}

#[test]
fn histogram_series_count_as_their_family() {
    let families = exported_families(
        "# HELP h latency\n# TYPE h histogram\nh_bucket{le=\"1\"} 0\n# TYPE c counter\nc 1\n",
    );
    assert!(is_exported("h_bucket", &families));
    assert!(is_exported("h_count", &families));
    assert!(is_exported("c", &families));
    assert!(!is_exported("c_bucket", &families));
    assert!(!is_exported("d", &families));
}
