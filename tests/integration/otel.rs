//! OpenTelemetry traces through the real daemon to a real OTLP/HTTP receiver
//! (tests/otlp_receiver.py, which decodes every export with the opentelemetry-proto package):
//! the caller's trace continued, an attempt span per upstream try whose id reaches the upstream
//! in `traceparent`, GenAI attributes of an inference request against the simulator, sampling
//! that follows the caller, and a collector that is away or silent changing nothing for clients.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::backends::{closed_port, silent_server, EchoBackend};
use crate::balance_support::{lb_builder, wait_status};
use crate::client::{http_request, Request};
use crate::harness::{Daemon, DEFAULT_TIMEOUTS};

/// The caller's trace and span in the tests' `traceparent`.
const CALLER_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";
/// OTLP span kinds.
const KIND_SERVER: i64 = 2;
const KIND_CLIENT: i64 = 3;
/// Longest wait for a span to be exported (batches leave every 500 ms).
const SPAN_WAIT: Duration = Duration::from_secs(15);

/// The receiver process and the spans it printed.
struct Receiver {
    child: Child,
    addr: SocketAddr,
    spans: Arc<Mutex<Vec<Value>>>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Receiver {
    fn start() -> Self {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let python = root.join("target/test-venv/bin/python");
        assert!(
            python.exists(),
            "{} is missing: run scripts/setup.sh (it installs opentelemetry-proto there)",
            python.display()
        );
        let mut child = Command::new(python)
            .arg(root.join("tests/otlp_receiver.py"))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the OTLP receiver");
        let stdout = child.stdout.take().expect("receiver stdout");
        let mut lines = BufReader::new(stdout).lines();
        let first = lines
            .next()
            .expect("receiver said nothing")
            .expect("read receiver");
        let port: u16 = first
            .strip_prefix("listening ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("unexpected receiver line {first:?}"));
        let spans = Arc::new(Mutex::new(Vec::new()));
        let sink = spans.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                if let Some(json) = line.strip_prefix("span ") {
                    let span: Value = serde_json::from_str(json).expect("span json");
                    sink.lock().expect("spans").push(span);
                }
            }
        });
        Self {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            spans,
        }
    }

    /// Waits for a span `pick` accepts.
    async fn span(&self, what: &str, pick: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + SPAN_WAIT;
        loop {
            if let Some(span) = self.spans.lock().expect("spans").iter().find(|s| pick(s)) {
                return span.clone();
            }
            assert!(
                Instant::now() < deadline,
                "no {what} span arrived; got {:#?}",
                self.spans.lock().expect("spans")
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn count(&self, pick: impl Fn(&Value) -> bool) -> usize {
        self.spans
            .lock()
            .expect("spans")
            .iter()
            .filter(|s| pick(s))
            .count()
    }
}

/// `otel:` sending to `endpoint` with `sample_ratio`.
fn otel_yaml(endpoint: &str, sample_ratio: f64) -> String {
    format!(
        "otel: {{ endpoint: \"{endpoint}\", service_name: edge-test, sample_ratio: {sample_ratio}, timeout: 2s }}\n"
    )
}

/// A daemon whose `lb` listener sends everything to `web`, tracing to `endpoint`.
async fn traced(web: &EchoBackend, endpoint: &str, sample_ratio: f64) -> Daemon {
    lb_builder()
        .upstream("app", &[web.addr], DEFAULT_TIMEOUTS)
        .yaml(&otel_yaml(endpoint, sample_ratio))
        .start()
        .await
}

fn attr<'a>(span: &'a Value, key: &str) -> &'a Value {
    &span["attributes"][key]
}

/// `00-TRACE-SPAN-FLAGS` into its parts.
fn traceparent_parts(value: &str) -> (String, String, String) {
    let parts: Vec<&str> = value.split('-').collect();
    assert_eq!(parts.len(), 4, "traceparent {value:?}");
    assert_eq!(parts[0], "00", "traceparent {value:?}");
    (parts[1].into(), parts[2].into(), parts[3].into())
}

#[tokio::test]
async fn spans_continue_the_callers_trace_and_name_the_attempt_upstream() {
    let receiver = Receiver::start();
    let web = EchoBackend::start("web").await;
    let d = traced(&web, &format!("http://{}", receiver.addr), 1.0).await;
    let lb = d.extra("lb");

    let caller = format!("00-{CALLER_TRACE}-{CALLER_SPAN}-01");
    let r = http_request(
        lb,
        &Request::get("web.test", "/page?x=1")
            .header("traceparent", &caller)
            .header("tracestate", "vendor=abc")
            .header("user-agent", "otel-test/1"),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());

    // The upstream got the attempt span's context in the caller's trace, and the caller's state.
    let seen = web.last();
    let sent = seen.header("traceparent").expect("traceparent upstream");
    let (trace, attempt_id, flags) = traceparent_parts(sent);
    assert_eq!(trace, CALLER_TRACE);
    assert_ne!(attempt_id, CALLER_SPAN);
    assert_eq!(flags, "01");
    assert_eq!(
        seen.header_all("traceparent").len(),
        1,
        "one traceparent upstream"
    );
    assert_eq!(seen.header("tracestate"), Some("vendor=abc"));

    let server = receiver
        .span("server", |s| {
            s["kind"] == KIND_SERVER && s["trace_id"] == CALLER_TRACE
        })
        .await;
    assert_eq!(server["parent_span_id"], CALLER_SPAN, "{server:#}");
    assert_eq!(server["service"], "edge-test");
    assert_eq!(server["name"], "GET app");
    assert_eq!(attr(&server, "http.request.method"), "GET");
    assert_eq!(attr(&server, "url.path"), "/page");
    assert_eq!(attr(&server, "http.route"), "app");
    assert_eq!(attr(&server, "ferrogate.upstream"), "app");
    assert_eq!(attr(&server, "http.response.status_code"), 200);
    assert_eq!(attr(&server, "server.address"), "web.test");
    assert_eq!(attr(&server, "user_agent.original"), "otel-test/1");

    let attempt = receiver
        .span("client", |s| {
            s["kind"] == KIND_CLIENT && s["trace_id"] == CALLER_TRACE
        })
        .await;
    assert_eq!(attempt["span_id"], attempt_id.as_str(), "{attempt:#}");
    assert_eq!(attempt["parent_span_id"], server["span_id"]);
    assert_eq!(attr(&attempt, "server.port"), i64::from(web.addr.port()));
    assert_eq!(attr(&attempt, "http.response.status_code"), 200);

    // Without a traceparent the request starts a trace of its own, carried upstream.
    let r = http_request(lb, &Request::get("web.test", "/fresh")).await;
    assert_eq!(r.status, 200);
    let sent = web
        .last()
        .header("traceparent")
        .expect("traceparent")
        .to_string();
    let (trace, _, flags) = traceparent_parts(&sent);
    assert_ne!(trace, CALLER_TRACE);
    assert_eq!(flags, "01");
    let fresh = receiver
        .span("fresh server", |s| {
            s["kind"] == KIND_SERVER && s["trace_id"] == trace.as_str()
        })
        .await;
    assert_eq!(fresh["parent_span_id"], "", "a root span: {fresh:#}");
}

#[tokio::test]
async fn a_failed_attempt_and_its_retry_are_two_spans() {
    let receiver = Receiver::start();
    let web = EchoBackend::start("web").await;
    let down = closed_port();
    let d = lb_builder()
        .upstream_yaml(
            "app",
            &format!(
                "    servers: [ {{ address: {} }}, {{ address: {} }} ]\n    balance: round_robin\n    retries: 1\n",
                down.addr, web.addr
            ),
        )
        .yaml(&otel_yaml(&format!("http://{}", receiver.addr), 1.0))
        .start()
        .await;
    let lb = d.extra("lb");
    // Round robin reaches the closed port on one of two requests; its retry goes to `web`.
    for _ in 0..2 {
        let r = http_request(lb, &Request::get("web.test", "/")).await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let failed = receiver
        .span("failed attempt", |s| {
            s["kind"] == KIND_CLIENT
                && s["attributes"]["server.port"] == i64::from(down.addr.port())
        })
        .await;
    assert_eq!(failed["status"], 2, "an error status: {failed:#}");
    assert!(attr(&failed, "error.type").is_string(), "{failed:#}");
    let trace = failed["trace_id"].clone();
    let retry = receiver
        .span("retry", |s| {
            s["kind"] == KIND_CLIENT && s["trace_id"] == trace && s["span_id"] != failed["span_id"]
        })
        .await;
    assert_eq!(retry["parent_span_id"], failed["parent_span_id"]);
    assert_eq!(attr(&retry, "http.request.resend_count"), 1);
    assert_eq!(attr(&retry, "http.response.status_code"), 200);
}

#[tokio::test]
async fn sampling_follows_the_caller_and_the_ratio() {
    let receiver = Receiver::start();
    let web = EchoBackend::start("web").await;
    let d = traced(&web, &format!("http://{}", receiver.addr), 0.0).await;
    let lb = d.extra("lb");
    // Started here at ratio 0: not recorded, and said so upstream.
    for _ in 0..3 {
        let r = http_request(lb, &Request::get("web.test", "/unsampled")).await;
        assert_eq!(r.status, 200);
        let sent = web
            .last()
            .header("traceparent")
            .expect("traceparent")
            .to_string();
        assert_eq!(traceparent_parts(&sent).2, "00");
    }
    // A caller that samples is followed.
    let caller = format!("00-{CALLER_TRACE}-{CALLER_SPAN}-01");
    let r = http_request(
        lb,
        &Request::get("web.test", "/sampled").header("traceparent", &caller),
    )
    .await;
    assert_eq!(r.status, 200);
    receiver
        .span("caller-sampled", |s| {
            s["trace_id"] == CALLER_TRACE && s["kind"] == KIND_SERVER
        })
        .await;
    assert_eq!(
        receiver.count(|s| s["attributes"]["url.path"] == "/unsampled"),
        0,
        "unsampled requests were exported"
    );
}

#[tokio::test]
async fn inference_spans_carry_the_gen_ai_attributes() {
    let receiver = Receiver::start();
    let node = ferrogate_sim::start(ferrogate_sim::SimConfig {
        models: vec!["llama-test".to_string()],
        decode_ms: 1.0,
        prefill_tokens_per_sec: 1_000_000.0,
        default_max_tokens: 8,
        ..ferrogate_sim::SimConfig::default()
    })
    .await
    .expect("start simulator");
    let d = lb_builder()
        .upstream_yaml(
            "app",
            &format!(
                "    servers: [ {{ address: {} }} ]\n    inference: {{ engine: vllm, models: [llama-test] }}\n",
                node.addr()
            ),
        )
        .yaml(&otel_yaml(&format!("http://{}", receiver.addr), 1.0))
        .start()
        .await;
    let lb = d.extra("lb");
    for stream in [true, false] {
        let mut req = Request::post("lb.test", "/v1/chat/completions")
            .header("Content-Type", "application/json")
            .header(
                "traceparent",
                &format!("00-{CALLER_TRACE}-{CALLER_SPAN}-01"),
            );
        req.body = serde_json::to_vec(&json!({
            "model": "llama-test",
            "stream": stream,
            "stream_options": {"include_usage": true},
            "messages": [{"role": "user", "content": format!("hello, stream {stream}")}],
        }))
        .expect("json");
        let r = http_request(lb, &req).await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    for stream in [true, false] {
        let span = receiver
            .span("inference server", |s| {
                s["kind"] == KIND_SERVER
                    && s["attributes"]["gen_ai.usage.output_tokens"].is_i64()
                    && s["attributes"]["gen_ai.server.time_to_first_token"].is_f64() == stream
            })
            .await;
        assert_eq!(
            attr(&span, "gen_ai.request.model"),
            "llama-test",
            "{span:#}"
        );
        assert_eq!(attr(&span, "gen_ai.operation.name"), "chat");
        assert!(
            attr(&span, "gen_ai.usage.input_tokens").as_i64() > Some(0),
            "{span:#}"
        );
        assert_eq!(attr(&span, "gen_ai.usage.output_tokens"), 8, "{span:#}");
    }
}

#[tokio::test]
async fn a_reload_sends_spans_to_the_new_collector() {
    let first = Receiver::start();
    let second = Receiver::start();
    let web = EchoBackend::start("web").await;
    let mut d = traced(&web, &format!("http://{}", first.addr), 1.0).await;
    let lb = d.extra("lb");
    let before = |path: &'static str| move |s: &Value| s["attributes"]["url.path"] == path;
    assert_eq!(
        http_request(lb, &Request::get("web.test", "/one"))
            .await
            .status,
        200
    );
    first.span("before the reload", before("/one")).await;

    let moved = d
        .initial_yaml()
        .replace(&first.addr.to_string(), &second.addr.to_string());
    d.replace_config(&moved);
    wait_status(&d, Duration::from_secs(10), "generation 2", |s| {
        s["generation"] == 2
    })
    .await;
    assert_eq!(
        http_request(lb, &Request::get("web.test", "/two"))
            .await
            .status,
        200
    );
    second.span("after the reload", before("/two")).await;
    assert_eq!(
        first.count(before("/two")),
        0,
        "the old collector got a new span"
    );
}

#[tokio::test]
async fn an_absent_or_silent_collector_changes_nothing_for_clients() {
    let web = EchoBackend::start("web").await;
    let absent = closed_port();
    let silent = silent_server().await;
    for endpoint in [
        format!("http://{}", absent.addr),
        format!("http://{silent}"),
    ] {
        let d = traced(&web, &endpoint, 1.0).await;
        let lb = d.extra("lb");
        // More requests than one export batch, over more than one batch delay.
        for i in 0..600 {
            let r = http_request(lb, &Request::get("web.test", &format!("/{i}"))).await;
            assert_eq!(r.status, 200, "{endpoint}: {}", r.text());
            assert!(web.last().header("traceparent").is_some());
        }
    }
}
