//! The node scraper against real HTTP servers standing in for vLLM and SGLang: the models and
//! load they report appear in `/status/upstreams.json`, follow what they answer, and a stopped
//! server's last reading is kept while it ages.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::backends::read_request;
use crate::balance_support::{get, lb_builder, server_of, servers_yaml, status, wait_status};

/// Longest wait for the status to reach a state.
const LIMIT: Duration = Duration::from_secs(20);

/// What a fake node answers.
#[derive(Debug, Clone, Default)]
struct Answers {
    models: Vec<String>,
    metrics: String,
    /// Send `/metrics` chunked instead of with a Content-Length.
    chunked: bool,
}

/// An inference server stand-in: `GET /v1/models` and `GET /metrics` from [`Answers`] that the
/// test may change; it logs every path asked (with its Host header) and can be stopped.
struct FakeNode {
    addr: SocketAddr,
    answers: Arc<Mutex<Answers>>,
    asked: Arc<Mutex<Vec<(String, String)>>>,
    task: JoinHandle<()>,
}

impl FakeNode {
    async fn start(answers: Answers) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind node");
        let addr = listener.local_addr().expect("node addr");
        let answers = Arc::new(Mutex::new(answers));
        let asked = Arc::new(Mutex::new(Vec::new()));
        let (shared, log) = (answers.clone(), asked.clone());
        let task = tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let (shared, log) = (shared.clone(), log.clone());
                tokio::spawn(async move {
                    let mut reader = BufReader::new(socket);
                    let Ok(Some(request)) = read_request(&mut reader).await else {
                        return;
                    };
                    let host = request.header("host").unwrap_or("").to_string();
                    log.lock()
                        .expect("log")
                        .push((request.target.clone(), host));
                    let answers = shared.lock().expect("answers").clone();
                    let reply = respond(&request.target, &answers);
                    let mut socket = reader.into_inner();
                    let _ = socket.write_all(&reply).await;
                    let _ = socket.shutdown().await;
                });
            }
        });
        Self {
            addr,
            answers,
            asked,
            task,
        }
    }

    fn set_metrics(&self, text: &str) {
        self.answers.lock().expect("answers").metrics = text.to_string();
    }

    fn set_models(&self, models: &[&str]) {
        self.answers.lock().expect("answers").models =
            models.iter().map(|m| m.to_string()).collect();
    }

    fn asked(&self) -> Vec<(String, String)> {
        self.asked.lock().expect("log").clone()
    }

    /// Stops listening: later connections are refused.
    fn stop(&self) {
        self.task.abort();
    }
}

fn respond(target: &str, answers: &Answers) -> Vec<u8> {
    match target {
        "/v1/models" => {
            let data: Vec<Value> = answers
                .models
                .iter()
                .map(|m| serde_json::json!({"id": m, "object": "model", "owned_by": "vllm"}))
                .collect();
            let body = serde_json::json!({"object": "list", "data": data}).to_string();
            with_length("application/json", &body)
        }
        "/metrics" if answers.chunked => {
            let body = &answers.metrics;
            let (head, tail) = body.split_at(body.len() / 2);
            let mut out = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
            for part in [head, tail] {
                if !part.is_empty() {
                    out.extend_from_slice(format!("{:x}\r\n{part}\r\n", part.len()).as_bytes());
                }
            }
            out.extend_from_slice(b"0\r\n\r\n");
            out
        }
        "/metrics" => with_length("text/plain; version=0.0.4", &answers.metrics),
        _ => b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_vec(),
    }
}

fn with_length(content_type: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// A vLLM V1 exposition with two engines sharing the counts.
fn vllm_metrics(waiting: u32, running: u32, kv: f64) -> String {
    let model = "meta-llama/Llama-3.1-8B-Instruct";
    format!(
        "# HELP vllm:num_requests_running Number of requests in model execution batches.\n\
         # TYPE vllm:num_requests_running gauge\n\
         vllm:num_requests_running{{engine=\"0\",model_name=\"{model}\"}} {running}.0\n\
         vllm:num_requests_running{{engine=\"1\",model_name=\"{model}\"}} 0.0\n\
         # HELP vllm:num_requests_waiting Number of requests waiting to be processed.\n\
         # TYPE vllm:num_requests_waiting gauge\n\
         vllm:num_requests_waiting{{engine=\"0\",model_name=\"{model}\"}} {waiting}.0\n\
         # HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.\n\
         # TYPE vllm:kv_cache_usage_perc gauge\n\
         vllm:kv_cache_usage_perc{{engine=\"0\",model_name=\"{model}\"}} {kv}\n\
         vllm:kv_cache_usage_perc{{engine=\"1\",model_name=\"{model}\"}} {kv}\n\
         # TYPE vllm:prefix_cache_queries_total counter\n\
         vllm:prefix_cache_queries_total{{engine=\"0\",model_name=\"{model}\"}} 1000.0\n\
         # TYPE vllm:prefix_cache_hits_total counter\n\
         vllm:prefix_cache_hits_total{{engine=\"0\",model_name=\"{model}\"}} 400.0\n"
    )
}

fn sglang_metrics(queue: u32, running: u32, usage: f64) -> String {
    let model = "Qwen/Qwen2.5-7B-Instruct";
    format!(
        "# HELP sglang:num_running_reqs The number of running requests.\n\
         # TYPE sglang:num_running_reqs gauge\n\
         sglang:num_running_reqs{{model_name=\"{model}\"}} {running}.0\n\
         # HELP sglang:num_queue_reqs The number of requests in the waiting queue.\n\
         # TYPE sglang:num_queue_reqs gauge\n\
         sglang:num_queue_reqs{{model_name=\"{model}\"}} {queue}.0\n\
         # HELP sglang:token_usage The token usage.\n\
         # TYPE sglang:token_usage gauge\n\
         sglang:token_usage{{model_name=\"{model}\"}} {usage}\n\
         # HELP sglang:cache_hit_rate The prefix cache hit rate.\n\
         # TYPE sglang:cache_hit_rate gauge\n\
         sglang:cache_hit_rate{{model_name=\"{model}\"}} 0.5\n"
    )
}

fn models_of(server: &Value) -> Vec<String> {
    server["models"]
        .as_array()
        .map(|list| {
            list.iter()
                .filter_map(|m| m.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Whether `server` shows this load.
fn shows(server: &Value, waiting: f64, running: f64, kv: f64) -> bool {
    server["waiting"].as_f64() == Some(waiting)
        && server["running"].as_f64() == Some(running)
        && server["kv_usage"]
            .as_f64()
            .is_some_and(|v| (v - kv).abs() < 1e-9)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scraped_models_and_load_follow_the_servers() {
    let a = FakeNode::start(Answers {
        models: vec!["llama".into()],
        metrics: vllm_metrics(2, 3, 0.5),
        chunked: false,
    })
    .await;
    let b = FakeNode::start(Answers {
        models: vec!["llama".into(), "mistral".into()],
        metrics: vllm_metrics(0, 1, 0.125),
        chunked: true,
    })
    .await;
    let sg = FakeNode::start(Answers {
        models: vec!["never-asked".into()],
        metrics: sglang_metrics(4, 6, 0.75),
        chunked: false,
    })
    .await;
    let vllm_upstream = format!(
        "{}    inference: {{ engine: vllm, models: discover, refresh: 200ms, signal_max_age: 1s }}\n",
        servers_yaml(&[(a.addr, ""), (b.addr, "")])
    );
    let sglang_upstream = format!(
        "{}    inference: {{ engine: sglang, models: discover, refresh: 200ms }}\n",
        servers_yaml(&[(sg.addr, "models: [qwen]")])
    );
    let d = lb_builder()
        .route("{ name: sg, listener: lb, hosts: [sg.test], upstream: sg }")
        .upstream_yaml("app", &vllm_upstream)
        .upstream_yaml("sg", &sglang_upstream)
        .start()
        .await;

    // First readings: models from /v1/models, load summed over engines, KV averaged.
    let s = wait_status(&d, LIMIT, "first readings", |s| {
        let (sa, sb) = (server_of(s, "app", a.addr), server_of(s, "app", b.addr));
        let sgs = server_of(s, "sg", sg.addr);
        models_of(&sa) == ["llama"]
            && models_of(&sb) == ["llama", "mistral"]
            && shows(&sa, 2.0, 3.0, 0.5)
            && shows(&sb, 0.0, 1.0, 0.125)
            && shows(&sgs, 4.0, 6.0, 0.75)
    })
    .await;
    let sgs = server_of(&s, "sg", sg.addr);
    assert_eq!(models_of(&sgs), ["qwen"], "a configured list wins: {sgs}");
    assert!(sgs["signal_age_ms"].as_u64().is_some(), "{sgs}");
    assert!(
        sg.asked().iter().all(|(path, _)| path == "/metrics"),
        "a server with configured models is asked only for metrics: {:?}",
        sg.asked()
    );
    let asked = a.asked();
    assert!(asked.iter().any(|(p, _)| p == "/v1/models"), "{asked:?}");
    assert!(
        asked.iter().all(|(_, host)| host == &a.addr.to_string()),
        "Host is the server's address: {asked:?}"
    );

    // The readings follow what the servers say.
    a.set_metrics(&vllm_metrics(7, 1, 0.875));
    a.set_models(&["llama", "phi"]);
    wait_status(&d, LIMIT, "changed readings", |s| {
        let sa = server_of(s, "app", a.addr);
        shows(&sa, 7.0, 1.0, 0.875) && models_of(&sa) == ["llama", "phi"]
    })
    .await;

    // A garbage answer is a failed scrape: the last reading stays.
    b.set_metrics("<html>maintenance</html>");
    let admin = d.admin.expect("admin listener");
    let failures = |text: &str| {
        text.lines().any(|l| {
            l.starts_with("ferrogate_inference_scrape_failures_total{")
                && l.contains("kind=\"metrics\"")
                && l.contains(&format!("server=\"{}\"", b.addr))
        })
    };
    let deadline = std::time::Instant::now() + LIMIT;
    loop {
        let metrics = get(admin, "/metrics", &[]).await.text();
        if failures(&metrics) {
            assert!(
                metrics.contains(&format!(
                    "ferrogate_inference_requests_waiting{{server=\"{}\",upstream=\"app\"}} 7",
                    a.addr
                )),
                "{metrics}"
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no metrics scrape failure counted for {}:\n{metrics}",
            b.addr
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let s = status(&d).await;
    assert!(shows(&server_of(&s, "app", b.addr), 0.0, 1.0, 0.125), "{s}");

    // A stopped server keeps its last reading while it ages past signal_max_age; the others
    // stay fresh.
    a.stop();
    let age = |server: &Value| server["signal_age_ms"].as_u64().unwrap_or(0);
    let s = wait_status(&d, LIMIT, "a's reading ages, sg's stays fresh", |s| {
        age(&server_of(s, "app", a.addr)) > 1500 && age(&server_of(s, "sg", sg.addr)) < 1500
    })
    .await;
    let sa = server_of(&s, "app", a.addr);
    assert!(shows(&sa, 7.0, 1.0, 0.875), "kept: {sa}");
    assert_eq!(models_of(&sa), ["llama", "phi"], "kept: {sa}");
}
