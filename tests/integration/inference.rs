//! Inference upstreams through the real daemon against real GPU node simulators
//! (`ferrogate_sim`): model routing, the merged `/v1/models`, OpenAI errors, the body forwarded
//! byte for byte (small and large), session affinity, cache-aware prefix routing, failover before
//! the first byte, cancellation of the upstream when the client goes away, admission errors.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ferrogate_sim::{SimConfig, SimHandle};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::backends::closed_port;
use crate::balance_support::{lb_builder, servers_yaml, status};
use crate::client::{http_request, Request, Response};
use crate::harness::Daemon;

/// A simulator serving `models`, quick enough for tests.
async fn node(models: &[&str]) -> SimHandle {
    node_with(models, |_| {}).await
}

async fn node_with(models: &[&str], tune: impl FnOnce(&mut SimConfig)) -> SimHandle {
    let mut cfg = SimConfig {
        models: models.iter().map(|m| m.to_string()).collect(),
        decode_ms: 1.0,
        prefill_tokens_per_sec: 1_000_000.0,
        default_max_tokens: 8,
        ..SimConfig::default()
    };
    tune(&mut cfg);
    ferrogate_sim::start(cfg).await.expect("start simulator")
}

/// A daemon whose `lb` listener routes everything to the inference upstream `app`.
async fn daemon(servers: &[(SocketAddr, &str)], extra: &str) -> Daemon {
    let servers = servers_yaml(servers);
    lb_builder()
        .upstream_yaml("app", &format!("{servers}{extra}"))
        .start()
        .await
}

fn chat(model: &str, prompt: &str, stream: bool) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "model": model,
        "stream": stream,
        "messages": [{"role": "user", "content": prompt}],
    }))
    .expect("json")
}

async fn post(addr: SocketAddr, path: &str, body: Vec<u8>, headers: &[(&str, &str)]) -> Response {
    let mut req = Request::post("lb.test", path).header("Content-Type", "application/json");
    for (n, v) in headers {
        req = req.header(n, v);
    }
    req.body = body;
    http_request(addr, &req).await
}

/// Sends a request and reads until the daemon closes or ends the response; never panics on a
/// cut stream (returns what arrived).
async fn post_raw(addr: SocketAddr, body: Vec<u8>) -> String {
    let mut req = Request::post("lb.test", "/v1/chat/completions").header("Connection", "close");
    req.body = body;
    let mut tcp = TcpStream::connect(addr).await.expect("connect");
    tcp.write_all(&req.to_bytes()).await.expect("write");
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

fn json_of(r: &Response) -> Value {
    serde_json::from_slice(&r.body).unwrap_or_else(|_| panic!("not JSON: {}", r.text()))
}

fn served(n: &SimHandle) -> u64 {
    n.stats().totals.requests
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_by_model_and_merges_the_model_lists() {
    let (a, b, c) = (
        node(&["llama"]).await,
        node(&["qwen"]).await,
        node(&["llama", "qwen"]).await,
    );
    let d = daemon(
        &[
            (a.addr(), "models: [llama]"),
            (b.addr(), "models: [qwen]"),
            (c.addr(), "models: [llama, qwen]"),
        ],
        "    balance: least_inflight\n    inference: { engine: vllm, models: discover }\n",
    )
    .await;
    let lb = d.extra("lb");
    let models = http_request(lb, &Request::get("lb.test", "/v1/models")).await;
    assert_eq!(models.status, 200, "{}", models.text());
    let ids: Vec<String> = json_of(&models)["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|m| m["id"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(ids, ["llama", "qwen"]);
    for i in 0..12 {
        let r = post(
            lb,
            "/v1/chat/completions",
            chat("llama", &format!("q{i}"), false),
            &[],
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(json_of(&r)["model"], "llama");
    }
    assert_eq!(served(&b), 0, "qwen-only node got llama requests");
    assert_eq!(served(&a) + served(&c), 12);
    assert!(
        served(&a) > 0 && served(&c) > 0,
        "least_inflight spreads over both"
    );

    let r = post(lb, "/v1/chat/completions", chat("mistral", "x", false), &[]).await;
    assert_eq!(r.status, 404, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/json"));
    let e = json_of(&r);
    assert_eq!(e["error"]["code"], "model_not_found");
    assert_eq!(e["error"]["param"], "model");

    let r = post(
        lb,
        "/v1/chat/completions",
        b"{\"model\": \"llama\", ".to_vec(),
        &[],
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(json_of(&r)["error"]["type"], "invalid_request_error");
    let r = post(
        lb,
        "/v1/chat/completions",
        b"{\"messages\": []}".to_vec(),
        &[],
    )
    .await;
    assert_eq!(r.status, 400);
    assert_eq!(json_of(&r)["error"]["param"], "model");
    let total: u64 = [&a, &b, &c].iter().map(|n| served(n)).sum();
    assert_eq!(total, 12, "refused requests never reach a node");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_bodies_reach_the_node_byte_for_byte() {
    let (a, b) = (node(&["llama"]).await, node(&["qwen"]).await);
    let d = daemon(
        &[(a.addr(), "models: [llama]"), (b.addr(), "models: [qwen]")],
        "    inference: { engine: vllm, models: discover }\n",
    )
    .await;
    let lb = d.extra("lb");
    // 40 KiB (read whole), 100 KiB and 1 MiB (routed on a prefix, the rest streamed).
    for size in [40 << 10, 100 << 10, 1 << 20] {
        let prompt = "All work and no play makes Jack a dull boy. ".repeat(size / 44);
        // `model` first, as OpenWebUI sends it: a prefix of the body is enough to route.
        let body = format!(
            "{{\"model\":\"qwen\",\"messages\":[{{\"role\":\"user\",\"content\":\"{prompt}\"}}]}}"
        )
        .into_bytes();
        let r = post(lb, "/v1/chat/completions", body.clone(), &[]).await;
        assert_eq!(r.status, 200, "{size}: {}", r.text());
        let usage = json_of(&r)["usage"]["prompt_tokens"].as_u64().unwrap_or(0);
        assert!(
            usage as usize >= prompt.len() / 4 - 8,
            "{size}: the node saw {usage} tokens"
        );
    }
    assert_eq!(served(&a), 0);
    assert_eq!(served(&b), 3);
    // The model after a long prompt: not in the prefix read, so balanced without it; the node
    // still gets the whole body (it would answer 400 to a cut one).
    let prompt = "z".repeat(600 << 10);
    let body = format!(
        "{{\"messages\":[{{\"role\":\"user\",\"content\":\"{prompt}\"}}],\"model\":\"qwen\"}}"
    );
    let r = post(lb, "/v1/chat/completions", body.into_bytes(), &[]).await;
    // 200 from the qwen node, or the llama node's own 404 for `qwen`: either way the node
    // parsed the whole JSON (a cut body would get 400).
    assert!(r.status == 200 || r.status == 404, "{}", r.text());
    if r.status == 404 {
        assert_eq!(json_of(&r)["error"]["code"], "model_not_found");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chat_stays_on_its_node_and_chats_spread() {
    let nodes = [node(&["m"]).await, node(&["m"]).await, node(&["m"]).await];
    let servers: Vec<(SocketAddr, &str)> = nodes.iter().map(|n| (n.addr(), "")).collect();
    let d = daemon(
        &servers,
        "    balance: least_inflight\n    inference: { engine: vllm, models: [m] }\n",
    )
    .await;
    let lb = d.extra("lb");
    for i in 0..8 {
        let r = post(
            lb,
            "/v1/chat/completions",
            chat("m", &format!("turn {i}"), false),
            &[("X-OpenWebUI-Chat-Id", "chat-1")],
        )
        .await;
        assert_eq!(r.status, 200);
    }
    let counts: Vec<u64> = nodes.iter().map(served).collect();
    assert_eq!(counts.iter().filter(|c| **c == 8).count(), 1, "{counts:?}");
    for i in 0..30 {
        let chat_id = format!("chat-{}", 100 + i);
        let r = post(
            lb,
            "/v1/chat/completions",
            chat("m", "hello", false),
            &[("X-OpenWebUI-Chat-Id", &chat_id)],
        )
        .await;
        assert_eq!(r.status, 200);
    }
    let counts: Vec<u64> = nodes.iter().map(served).collect();
    assert!(
        counts.iter().all(|c| *c >= 3),
        "sessions spread by hash: {counts:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_aware_sends_a_shared_prefix_where_it_is_cached() {
    let nodes = [node(&["m"]).await, node(&["m"]).await, node(&["m"]).await];
    let servers: Vec<(SocketAddr, &str)> = nodes.iter().map(|n| (n.addr(), "")).collect();
    let d = daemon(
        &servers,
        "    balance: cache_aware\n    inference: { engine: vllm, models: [m], affinity: false }\n",
    )
    .await;
    let lb = d.extra("lb");
    let system = "You are the assistant of tenant seven; answer politely. ".repeat(60);
    for i in 0..6 {
        let body = serde_json::to_vec(&json!({
            "model": "m",
            "messages": [
                {"role": "system", "content": system},
                {"role": "user", "content": format!("question {i}")},
            ],
        }))
        .expect("json");
        let r = post(lb, "/v1/chat/completions", body, &[]).await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let counts: Vec<u64> = nodes.iter().map(served).collect();
    assert_eq!(counts.iter().filter(|c| **c == 6).count(), 1, "{counts:?}");
    let holder = nodes.iter().find(|n| served(n) == 6).expect("holder");
    let stats = holder.stats();
    assert!(
        stats.prefix_cache_hit_tokens > 0,
        "the node reused its cache: {stats:?}"
    );
    let metrics = crate::balance_support::get(d.admin.expect("admin"), "/metrics", &[]).await;
    let text = metrics.text();
    assert!(
        text.contains("ferrogate_inference_decisions_total{policy=\"cache_aware\",reason=\"prefix_hit\",upstream=\"app\"} 5"),
        "{text}"
    );
    assert!(
        text.contains("ferrogate_inference_ttft_seconds_count"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_node_is_skipped_before_the_first_byte_but_a_started_stream_is_not_replayed() {
    let live = node(&["m"]).await;
    let dead = closed_port();
    let d = daemon(
        &[(dead.addr, ""), (live.addr(), "")],
        "    balance: round_robin\n    retries: 1\n    inference: { engine: vllm, models: [m] }\n",
    )
    .await;
    let lb = d.extra("lb");
    for i in 0..6 {
        let r = post(
            lb,
            "/v1/chat/completions",
            chat("m", &format!("{i}"), true),
            &[],
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert!(r.text().contains("data: [DONE]"));
    }
    assert_eq!(served(&live), 6);

    // A node that dies mid-stream: the client sees the stream cut, nothing is replayed.
    let (flaky, other) = (
        node_with(&["m"], |c| {
            c.faults.kill_after_tokens = Some(3);
        })
        .await,
        node(&["m"]).await,
    );
    let d2 = daemon(
        &[(flaky.addr(), ""), (other.addr(), "")],
        "    balance: least_inflight\n    retries: 1\n    inference: { engine: vllm, models: [m] }\n",
    )
    .await;
    let lb2 = d2.extra("lb");
    let body = chat("m", "go", true);
    let mut cut = 0;
    for _ in 0..4 {
        let text = post_raw(lb2, body.clone()).await;
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
        if !text.contains("[DONE]") {
            cut += 1;
        }
    }
    assert_eq!(flaky.stats().totals.killed, cut);
    assert!(cut > 0);
    assert_eq!(
        served(&other),
        4 - cut,
        "no stream was replayed on the other node"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_goes_away_cancels_generation_on_the_node() {
    let n = node_with(&["m"], |c| {
        c.decode_ms = 40.0;
        c.default_max_tokens = 500;
    })
    .await;
    let d = daemon(
        &[(n.addr(), "")],
        "    inference: { engine: vllm, models: [m] }\n",
    )
    .await;
    let lb = d.extra("lb");
    let mut req = Request::post("lb.test", "/v1/chat/completions");
    req.body = chat("m", "tell me a long story", true);
    let mut tcp = TcpStream::connect(lb).await.expect("connect");
    tcp.write_all(&req.to_bytes()).await.expect("write");
    let mut buf = vec![0u8; 4096];
    let mut seen = Vec::new();
    while !String::from_utf8_lossy(&seen).contains("data: ") {
        let n = tcp.read(&mut buf).await.expect("read");
        assert!(n > 0, "stream ended early");
        seen.extend_from_slice(&buf[..n]);
    }
    drop(tcp);
    let deadline = Instant::now() + Duration::from_secs(10);
    while n.stats().totals.cancelled == 0 {
        assert!(
            Instant::now() < deadline,
            "the node never saw the disconnect: {:?}",
            n.stats()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(n.stats().totals.served, 0);
    assert_eq!(n.stats().running, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_node_queues_then_refuses_in_openai_format() {
    let n = node_with(&["m"], |c| {
        c.decode_ms = 50.0;
        c.default_max_tokens = 200;
    })
    .await;
    let d = daemon(
        &[(n.addr(), "max_inflight: 1")],
        "    queue: { size: 1, timeout: 300ms }\n    inference: { engine: vllm, models: [m] }\n",
    )
    .await;
    let lb = d.extra("lb");
    // One long stream holds the only slot.
    let mut req = Request::post("lb.test", "/v1/chat/completions");
    req.body = chat("m", "hold", true);
    let mut holder = TcpStream::connect(lb).await.expect("connect");
    holder.write_all(&req.to_bytes()).await.expect("write");
    let mut buf = vec![0u8; 1024];
    let _ = holder.read(&mut buf).await.expect("first bytes");
    let waiting = tokio::spawn(post(lb, "/v1/chat/completions", chat("m", "a", false), &[]));
    tokio::time::sleep(Duration::from_millis(50)).await;
    let refused = post(lb, "/v1/chat/completions", chat("m", "b", false), &[]).await;
    assert_eq!(refused.status, 503, "{}", refused.text());
    assert!(refused.header("retry-after").is_some());
    assert_eq!(json_of(&refused)["error"]["type"], "server_error");
    let timed_out = waiting.await.expect("waiter");
    assert_eq!(timed_out.status, 503, "{}", timed_out.text());
    assert_eq!(json_of(&timed_out)["error"]["code"], "overloaded");
    assert_eq!(
        n.stats().totals.requests,
        1,
        "only the holder reached the node"
    );
    let st = status(&d).await;
    assert!(st.to_string().contains("\"app\""));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovered_models_and_scraped_queues_steer_the_metrics_policy() {
    let busy = node_with(&["llama"], |c| {
        c.max_num_seqs = 1;
        c.decode_ms = 50.0;
        c.default_max_tokens = 400;
    })
    .await;
    let idle = node(&["llama", "qwen"]).await;
    let d = daemon(
        &[(busy.addr(), ""), (idle.addr(), "")],
        "    balance: metrics\n    inference: { engine: vllm, models: discover, refresh: 200ms }\n",
    )
    .await;
    let lb = d.extra("lb");
    // Other clients keep the busy node's only slot taken and three more queued.
    let mut others = Vec::new();
    for _ in 0..4 {
        let mut req = Request::post("lb.test", "/v1/chat/completions");
        req.body = chat("llama", "elsewhere", true);
        let mut tcp = TcpStream::connect(busy.addr()).await.expect("connect");
        tcp.write_all(&req.to_bytes()).await.expect("write");
        others.push(tcp);
    }
    // Discovery: the merged list appears once both servers answered /v1/models.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = http_request(lb, &Request::get("lb.test", "/v1/models")).await;
        let body = r.text();
        if r.status == 200 && body.contains("qwen") && body.contains("llama") {
            break;
        }
        assert!(Instant::now() < deadline, "models never discovered: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The scraper sees the busy node's queue.
    loop {
        let st = status(&d).await;
        let waiting = crate::balance_support::servers_of(&st, "app")
            .iter()
            .find(|s| s["address"] == busy.addr().to_string())
            .and_then(|s| s["waiting"].as_f64())
            .unwrap_or(0.0);
        if waiting >= 3.0 {
            break;
        }
        assert!(Instant::now() < deadline, "queue never scraped: {st}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let before = served(&busy);
    for i in 0..6 {
        let r = post(
            lb,
            "/v1/chat/completions",
            chat("llama", &format!("{i}"), false),
            &[],
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    assert_eq!(
        served(&busy),
        before,
        "metrics sends nothing to the node with a queue"
    );
    assert_eq!(served(&idle), 6);
    // qwen lives on the idle node only (discovered, not configured).
    let r = post(lb, "/v1/chat/completions", chat("qwen", "q", false), &[]).await;
    assert_eq!(r.status, 200);
    drop(others);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overloaded_node_s_503_goes_to_another_node_before_any_byte() {
    let busy = node_with(&["m"], |c| c.faults.error_rate = 1.0).await;
    let ok = node(&["m"]).await;
    let d = daemon(
        &[(busy.addr(), ""), (ok.addr(), "")],
        "    balance: round_robin\n    retries: 1\n    inference: { engine: vllm, models: [m] }\n",
    )
    .await;
    let lb = d.extra("lb");
    for i in 0..6 {
        let r = post(
            lb,
            "/v1/chat/completions",
            chat("m", &format!("q{i}"), i % 2 == 0),
            &[],
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    // Round robin sent about half to the busy node first; every one of those moved on.
    let refused = busy.stats().totals.injected_errors;
    assert!(refused >= 2, "the busy node was tried: {refused}");
    assert_eq!(served(&ok), 6);
    // A node that is only full is not a failed node: it stays in the pool.
    let status = crate::observability::admin_get(&d, "/status.json").await;
    let doc: Value = serde_json::from_str(&status).expect("json");
    let servers = doc["upstreams"][0]["servers"]
        .as_array()
        .expect("servers")
        .clone();
    assert!(servers.iter().all(|s| s["state"] == "up"), "{servers:?}");

    // Without a retry left, the node's own 503 reaches the client.
    let d0 = daemon(
        &[(busy.addr(), "")],
        "    retries: 0\n    inference: { engine: vllm, models: [m] }\n",
    )
    .await;
    let r = post(
        d0.extra("lb"),
        "/v1/chat/completions",
        chat("m", "x", false),
        &[],
    )
    .await;
    assert_eq!(r.status, 503);
}
