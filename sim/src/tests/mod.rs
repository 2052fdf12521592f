//! The simulator started in-process on 127.0.0.1:0 and driven by a real TCP client: endpoints,
//! SSE framing, errors, prefix-cache hits, batching and queueing, faults, client disconnects.
//! Latencies are kept at a few milliseconds; assertions are on counts and states, with only
//! generous orderings of durations.

mod client;
mod kv_events;
mod token_endpoints;

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::metrics::sample;
use super::{start, Engine, Faults, SimConfig, SimHandle, SimStats};
use client::{request, sse_data, Conn};

/// Polls of a condition before a test gives up.
const POLLS: u32 = 500;
const POLL_EVERY: Duration = Duration::from_millis(10);

fn fast(models: &[&str]) -> SimConfig {
    SimConfig {
        models: models.iter().map(|m| m.to_string()).collect(),
        decode_ms: 1.0,
        prefill_tokens_per_sec: 1_000_000.0,
        ..SimConfig::default()
    }
}

/// Waits until the node's stats satisfy `ok`; fails the test with the last stats otherwise.
async fn wait_until(node: &SimHandle, what: &str, ok: impl Fn(&SimStats) -> bool) -> SimStats {
    for _ in 0..POLLS {
        let stats = node.stats();
        if ok(&stats) {
            return stats;
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
    panic!("{what}: never reached; last stats {:?}", node.stats());
}

fn chat(model: &str, content: &str, extra: Value) -> String {
    let mut body = json!({"model": model, "messages": [{"role": "user", "content": content}]});
    if let (Some(obj), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
        obj.extend(extra.clone());
    }
    body.to_string()
}

#[tokio::test]
async fn lists_its_models() {
    let node = start(fast(&["m1", "m2"])).await.unwrap();
    let (head, body) = request(node.addr(), "GET", "/v1/models", "").await;
    assert_eq!(head.status, 200);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["object"], "list");
    let ids: Vec<&str> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["m1", "m2"]);
    assert_eq!(v["data"][0]["object"], "model");
    let (head, _) = request(node.addr(), "GET", "/health", "").await;
    assert_eq!(head.status, 200);
}

#[tokio::test]
async fn answers_a_whole_chat_completion_with_usage() {
    let node = start(fast(&["m"])).await.unwrap();
    let body = chat("m", &"x".repeat(399), json!({"max_tokens": 5}));
    let (head, text) = request(node.addr(), "POST", "/v1/chat/completions", &body).await;
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-type"), Some("application/json"));
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], "m");
    assert_eq!(v["choices"][0]["message"]["role"], "assistant");
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    // The template's markers (3), "user\n" and 399 characters in 4-byte chunks (101), the
    // newline after the message (1) and the assistant's opening (1 + 3): 108 tokens.
    assert_eq!(v["usage"]["prompt_tokens"], 108);
    assert_eq!(v["usage"]["completion_tokens"], 5);
    assert_eq!(v["usage"]["total_tokens"], 113);
    let words = v["choices"][0]["message"]["content"].as_str().unwrap();
    assert_eq!(words.split_whitespace().count(), 5);
    let stats = node.stats();
    assert_eq!(
        (
            stats.totals.requests,
            stats.totals.served,
            stats.totals.cancelled
        ),
        (1, 1, 0)
    );
    assert_eq!(stats.requests_by_model["m"], 1);
}

#[tokio::test]
async fn streams_chat_chunks_with_usage_and_done_over_keep_alive() {
    let node = start(fast(&["m"])).await.unwrap();
    let mut conn = Conn::connect(node.addr()).await;
    let body = chat(
        "m",
        "hello there",
        json!({"stream": true, "max_tokens": 4, "stream_options": {"include_usage": true}}),
    );
    for round in 0..2 {
        let (head, text) = conn
            .exchange("POST", "/v1/chat/completions", &[], &body)
            .await;
        assert_eq!(head.status, 200, "round {round}");
        assert_eq!(head.header("content-type"), Some("text/event-stream"));
        assert!(text.ends_with("data: [DONE]\n\n"));
        let events = sse_data(&text);
        // role, 4 tokens, finish, usage, [DONE]
        assert_eq!(events.len(), 8, "{events:?}");
        let chunks: Vec<Value> = events[..7]
            .iter()
            .map(|e| serde_json::from_str(e).unwrap())
            .collect();
        assert!(chunks
            .iter()
            .all(|c| c["object"] == "chat.completion.chunk"));
        assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
        assert_eq!(chunks[1]["choices"][0]["delta"]["content"], "the ");
        assert_eq!(chunks[5]["choices"][0]["finish_reason"], "length");
        assert_eq!(chunks[6]["choices"], json!([]));
        assert_eq!(chunks[6]["usage"]["completion_tokens"], 4);
        assert_eq!(chunks[6]["usage"]["prompt_tokens"], 11);
    }
    assert_eq!(node.stats().totals.served, 2);
}

#[tokio::test]
async fn streams_text_completions_without_usage_unless_asked() {
    let node = start(fast(&["m"])).await.unwrap();
    let body = json!({"model": "m", "prompt": "abc", "stream": true, "max_tokens": 3}).to_string();
    let (head, text) = request(node.addr(), "POST", "/v1/completions", &body).await;
    assert_eq!(head.status, 200);
    let events = sse_data(&text);
    // 3 tokens, finish, [DONE]
    assert_eq!(events.len(), 5, "{events:?}");
    let first: Value = serde_json::from_str(&events[0]).unwrap();
    assert_eq!(first["object"], "text_completion");
    assert_eq!(first["choices"][0]["text"], "the ");
    assert!(!text.contains("\"usage\""));
    let body = json!({"model": "m", "prompt": "abc"}).to_string();
    let (_, text) = request(node.addr(), "POST", "/v1/completions", &body).await;
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["object"], "text_completion");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(v["usage"]["completion_tokens"], 64);
}

#[tokio::test]
async fn refuses_unknown_models_and_bad_json_with_openai_errors() {
    let node = start(fast(&["m"])).await.unwrap();
    let (head, text) = request(
        node.addr(),
        "POST",
        "/v1/chat/completions",
        &chat("nope", "hi", json!({})),
    )
    .await;
    assert_eq!(head.status, 404);
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["error"]["type"], "invalid_request_error");
    assert_eq!(v["error"]["param"], "model");
    assert_eq!(v["error"]["code"], "model_not_found");
    assert!(v["error"]["message"].as_str().unwrap().contains("nope"));

    let (head, text) = request(node.addr(), "POST", "/v1/completions", "{not json").await;
    assert_eq!(head.status, 400);
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["error"]["type"], "invalid_request_error");
    assert!(v["error"].get("param").is_some() && v["error"].get("code").is_some());

    let (head, _) = request(node.addr(), "GET", "/v2/else", "").await;
    assert_eq!(head.status, 404);
    let stats = node.stats();
    assert_eq!(
        (
            stats.totals.requests,
            stats.totals.bad_requests,
            stats.totals.served
        ),
        (2, 2, 0)
    );
}

/// Client-side time to the first token event of a streamed chat completion.
async fn streamed_ttft(node: &SimHandle, body: &str) -> Duration {
    let mut conn = Conn::connect(node.addr()).await;
    let started = Instant::now();
    conn.send("POST", "/v1/chat/completions", &[], body).await;
    let head = conn.head().await;
    assert_eq!(head.status, 200);
    // Chunk 1 is the role, chunk 2 the first token.
    conn.next_chunk().await.unwrap().unwrap();
    conn.next_chunk().await.unwrap().unwrap();
    let ttft = started.elapsed();
    conn.body(&head).await.unwrap();
    ttft
}

#[tokio::test]
async fn second_identical_prompt_hits_the_prefix_cache_and_starts_sooner() {
    let node = start(SimConfig {
        prefill_tokens_per_sec: 4000.0,
        ..fast(&["m"])
    })
    .await
    .unwrap();
    // 3200 characters in the template: 809 tokens, 50 full blocks of 16 tokens.
    let body = chat(
        "m",
        &"abcd".repeat(800),
        json!({"stream": true, "max_tokens": 2}),
    );
    let cold = streamed_ttft(&node, &body).await;
    let metrics = node.metrics();
    assert_eq!(
        sample(&metrics, "vllm:prefix_cache_hits_total", Some("m")),
        Some(0.0)
    );
    let warm = streamed_ttft(&node, &body).await;
    assert!(
        warm < cold,
        "cached prompt should start sooner: {warm:?} vs {cold:?}"
    );
    assert!(cold >= Duration::from_millis(150), "cold prefill {cold:?}");
    let (_, metrics) = request(node.addr(), "GET", "/metrics", "").await;
    assert_eq!(
        sample(&metrics, "vllm:prefix_cache_hits_total", Some("m")),
        Some(800.0)
    );
    assert_eq!(
        sample(&metrics, "vllm:prefix_cache_queries_total", Some("m")),
        Some(1618.0)
    );
    assert_eq!(
        sample(
            &metrics,
            "vllm:time_to_first_token_seconds_count",
            Some("m")
        ),
        Some(2.0)
    );
    let stats = node.stats();
    assert_eq!(stats.prefix_cache_hit_tokens, 800);
    assert_eq!(stats.cache_blocks_resident, 50);
    // Nothing runs: no block is referenced.
    assert_eq!(stats.kv_cache_usage, 0.0);
}

/// Opens a streamed chat completion and reads its head, leaving the body unread.
async fn open_stream(node: &SimHandle, model: &str, max_tokens: u32) -> Conn {
    let mut conn = Conn::connect(node.addr()).await;
    let body = chat(
        "m",
        model,
        json!({"stream": true, "max_tokens": max_tokens}),
    );
    conn.send("POST", "/v1/chat/completions", &[], &body).await;
    conn
}

#[tokio::test]
async fn max_num_seqs_makes_extra_requests_wait_and_dropped_ones_leave() {
    let node = start(SimConfig {
        max_num_seqs: 2,
        decode_ms: 5.0,
        ..fast(&["m"])
    })
    .await
    .unwrap();
    let mut conns = Vec::new();
    for i in 0..4 {
        conns.push(open_stream(&node, &format!("prompt {i}"), 10_000).await);
    }
    let stats = wait_until(&node, "2 running, 2 waiting", |s| {
        s.running == 2 && s.waiting == 2
    })
    .await;
    assert_eq!(stats.totals.requests, 4);
    let (_, metrics) = request(node.addr(), "GET", "/metrics", "").await;
    assert_eq!(
        sample(&metrics, "vllm:num_requests_running", Some("m")),
        Some(2.0)
    );
    assert_eq!(
        sample(&metrics, "vllm:num_requests_waiting", Some("m")),
        Some(2.0)
    );
    assert!(sample(&metrics, "vllm:kv_cache_usage_perc", Some("m")).is_some());
    // The running ones stream; the waiting ones have their headers but no token yet.
    for conn in &mut conns[..2] {
        let head = conn.head().await;
        assert_eq!(head.status, 200);
    }
    // Leaving frees the slots: one waiting request moves up when a running one goes.
    drop(conns.remove(0));
    wait_until(&node, "a waiting request takes the freed slot", |s| {
        s.totals.cancelled == 1 && s.running == 2 && s.waiting == 1
    })
    .await;
    drop(conns);
    let stats = wait_until(&node, "all gone", |s| {
        s.totals.cancelled == 4 && s.running == 0 && s.waiting == 0
    })
    .await;
    assert_eq!(stats.totals.served, 0);
}

#[tokio::test]
async fn a_full_queue_answers_503_with_retry_after() {
    let node = start(SimConfig {
        max_num_seqs: 1,
        max_waiting: Some(1),
        decode_ms: 5.0,
        ..fast(&["m"])
    })
    .await
    .unwrap();
    let _running = open_stream(&node, "a", 10_000).await;
    let _waiting = open_stream(&node, "b", 10_000).await;
    wait_until(&node, "1 running, 1 waiting", |s| {
        s.running == 1 && s.waiting == 1
    })
    .await;
    let (head, text) = request(
        node.addr(),
        "POST",
        "/v1/chat/completions",
        &chat("m", "c", json!({})),
    )
    .await;
    assert_eq!(head.status, 503);
    assert_eq!(head.header("retry-after"), Some("1"));
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["error"]["code"], "overloaded");
    assert_eq!(node.stats().totals.rejected, 1);
}

#[tokio::test]
async fn faults_inject_errors_unhealthiness_and_mid_stream_kills() {
    let node = start(fast(&["m"])).await.unwrap();
    let body = chat("m", "hi", json!({"stream": true, "max_tokens": 50}));

    let (head, _) = request(
        node.addr(),
        "POST",
        "/sim/faults",
        r#"{"error_rate":1.0,"unhealthy":true}"#,
    )
    .await;
    assert_eq!(head.status, 200);
    let (head, text) = request(node.addr(), "POST", "/v1/chat/completions", &body).await;
    assert_eq!(head.status, 503);
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["error"]["type"], "server_error");
    let (head, _) = request(node.addr(), "GET", "/health", "").await;
    assert_eq!(head.status, 503);
    assert_eq!(node.stats().totals.injected_errors, 1);

    let (head, _) = request(node.addr(), "POST", "/sim/faults", r#"{"slow_factor":0}"#).await;
    assert_eq!(head.status, 400);
    let (head, _) = request(
        node.addr(),
        "POST",
        "/sim/faults",
        r#"{"kill_after_tokens":3}"#,
    )
    .await;
    assert_eq!(head.status, 200);
    let (_, faults) = request(node.addr(), "GET", "/sim/faults", "").await;
    assert_eq!(
        serde_json::from_str::<Faults>(&faults)
            .unwrap()
            .kill_after_tokens,
        Some(3)
    );
    let (head, _) = request(node.addr(), "GET", "/health", "").await;
    assert_eq!(head.status, 200);

    let mut conn = Conn::connect(node.addr()).await;
    conn.send("POST", "/v1/chat/completions", &[], &body).await;
    let head = conn.head().await;
    assert_eq!(head.status, 200);
    let mut events = 0;
    let ended = loop {
        match conn.next_chunk().await {
            Ok(Some(_)) => events += 1,
            Ok(None) => break "clean end",
            Err(_) => break "dropped",
        }
        assert!(events <= 60, "stream did not stop");
    };
    assert_eq!(ended, "dropped");
    // The role chunk and three tokens.
    assert_eq!(events, 4);
    let stats = wait_until(&node, "killed counted", |s| s.totals.killed == 1).await;
    assert_eq!(
        (stats.totals.cancelled, stats.totals.served, stats.running),
        (0, 0, 0)
    );

    // Non-streamed: the connection drops with no response body.
    let mut conn = Conn::connect(node.addr()).await;
    conn.send(
        "POST",
        "/v1/completions",
        &[],
        r#"{"model":"m","prompt":"x"}"#,
    )
    .await;
    let received = String::from_utf8_lossy(&conn.read_to_end().await).into_owned();
    assert!(!received.contains("usage"), "{received}");
    wait_until(&node, "second kill counted", |s| s.totals.killed == 2).await;

    node.set_faults(Faults::default()).unwrap();
    let (head, _) = request(node.addr(), "POST", "/v1/chat/completions", &body).await;
    assert_eq!(head.status, 200);
}

#[tokio::test]
async fn a_client_leaving_mid_stream_is_cancelled_and_frees_its_slot() {
    let node = start(SimConfig {
        decode_ms: 5.0,
        ..fast(&["m"])
    })
    .await
    .unwrap();
    let mut conn = open_stream(&node, "stay a while", 10_000).await;
    let head = conn.head().await;
    assert_eq!(head.status, 200);
    for _ in 0..3 {
        conn.next_chunk().await.unwrap().unwrap();
    }
    assert_eq!(node.stats().running, 1);
    drop(conn);
    let stats = wait_until(&node, "cancel seen", |s| {
        s.totals.cancelled == 1 && s.running == 0
    })
    .await;
    assert_eq!(stats.totals.served, 0);
    let (_, stats) = request(node.addr(), "GET", "/sim/stats", "").await;
    let v: Value = serde_json::from_str(&stats).unwrap();
    assert_eq!(v["cancelled"], 1);
    assert_eq!(v["kv_cache_usage"], 0.0);
}

#[tokio::test]
async fn remembers_the_last_completion_requests_headers() {
    let node = start(fast(&["m"])).await.unwrap();
    let mut conn = Conn::connect(node.addr()).await;
    conn.exchange(
        "POST",
        "/v1/chat/completions",
        &[("Authorization", "Bearer node-key"), ("X-Request-Id", "r1")],
        &chat("m", "hi", json!({"max_tokens": 1})),
    )
    .await;
    let (_, text) = conn.exchange("GET", "/sim/stats", &[], "").await;
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        v["last_request_headers"]["authorization"],
        "Bearer node-key"
    );
    assert_eq!(v["last_request_headers"]["x-request-id"], "r1");
    assert_eq!(
        node.stats().last_request_headers["authorization"],
        "Bearer node-key"
    );
}

#[tokio::test]
async fn other_engines_speak_their_own_metric_names() {
    let node = start(SimConfig {
        engine: Engine::Sglang,
        ..fast(&["m"])
    })
    .await
    .unwrap();
    let body = chat("m", &"abcd".repeat(64), json!({"max_tokens": 1}));
    request(node.addr(), "POST", "/v1/chat/completions", &body).await;
    request(node.addr(), "POST", "/v1/chat/completions", &body).await;
    let (head, text) = request(node.addr(), "GET", "/metrics", "").await;
    assert_eq!(head.status, 200);
    assert_eq!(
        sample(&text, "sglang:num_running_reqs", Some("m")),
        Some(0.0)
    );
    assert_eq!(sample(&text, "sglang:num_queue_reqs", Some("m")), Some(0.0));
    assert!(sample(&text, "sglang:token_usage", Some("m")).is_some());
    // 256 characters in the template are 73 tokens, asked twice; 4 full blocks (64 tokens) hit
    // the second time.
    let rate = sample(&text, "sglang:cache_hit_rate", Some("m")).unwrap();
    assert!((rate - 64.0 / 146.0).abs() < 1e-9, "{rate}");
    assert!(!text.contains("vllm:"));

    let node = start(SimConfig {
        engine: Engine::Llamacpp,
        ..fast(&["m"])
    })
    .await
    .unwrap();
    let (_, text) = request(node.addr(), "GET", "/metrics", "").await;
    assert_eq!(
        sample(&text, "llamacpp:requests_processing", None),
        Some(0.0)
    );
    assert_eq!(sample(&text, "llamacpp:requests_deferred", None), Some(0.0));
}

#[tokio::test]
async fn a_client_leaving_a_non_streamed_request_is_cancelled() {
    let node = start(SimConfig {
        decode_ms: 5.0,
        ..fast(&["m"])
    })
    .await
    .unwrap();
    let mut conn = Conn::connect(node.addr()).await;
    let body = chat("m", "long answer", json!({"max_tokens": 10_000}));
    conn.send("POST", "/v1/chat/completions", &[], &body).await;
    wait_until(&node, "running", |s| s.running == 1).await;
    drop(conn);
    let stats = wait_until(&node, "cancel seen", |s| {
        s.totals.cancelled == 1 && s.running == 0
    })
    .await;
    assert_eq!(stats.totals.served, 0);
}
