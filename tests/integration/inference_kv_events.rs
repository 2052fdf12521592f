//! `cache_aware` on exact cache state through the real daemon: simulated vLLM nodes publish
//! their KV-cache events on real ZMQ sockets (PUB, and a replay ROUTER where configured) and
//! answer `POST /tokenize`. A follow-up goes to the node whose events say it holds the tenant's
//! blocks although the approximate index sent the tenant elsewhere; a stream joined late is
//! replayed whole; a gap that cannot be replayed, and a publisher silent while its node
//! serves, fall back to the approximate index and say so in the metrics and `/status`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ferrogate::inference::kv_events::block_hash;
use ferrogate_sim::tokenizer::{encode, render_chat, ChatMessage};
use ferrogate_sim::{KvEventsConfig, SimConfig, SimHandle};
use serde_json::json;

use crate::balance_support::{get, lb_builder, server_of, servers_yaml, status};
use crate::client::{http_request, Request, Response};
use crate::harness::Daemon;

/// A simulated vLLM node publishing its KV-cache events (with a replay socket when `replay`).
async fn node(replay: bool) -> SimHandle {
    let cfg = SimConfig {
        models: vec!["m".into()],
        default_max_tokens: 4,
        decode_ms: 1.0,
        kv_events: Some(KvEventsConfig {
            replay_endpoint: replay.then(|| "tcp://127.0.0.1:0".to_string()),
            ..KvEventsConfig::on("tcp://127.0.0.1:0")
        }),
        ..SimConfig::default()
    };
    ferrogate_sim::start(cfg).await.expect("start simulator")
}

/// The server's `inference:` entry naming its publisher.
fn kv_yaml(node: &SimHandle) -> String {
    let (events, replay) = node.kv_event_endpoints().expect("the node publishes");
    match replay {
        Some(replay) => {
            format!("inference: {{ kv_events: \"{events}\", kv_events_replay: \"{replay}\" }}")
        }
        None => format!("inference: {{ kv_events: \"{events}\" }}"),
    }
}

async fn daemon(nodes: &[&SimHandle]) -> Daemon {
    let entries: Vec<(SocketAddr, String)> = nodes.iter().map(|n| (n.addr(), kv_yaml(n))).collect();
    let servers: Vec<(SocketAddr, &str)> = entries.iter().map(|(a, e)| (*a, e.as_str())).collect();
    lb_builder()
        .upstream_yaml(
            "app",
            &format!(
                "{}    balance: cache_aware\n    inference: {{ engine: vllm, models: [m], refresh: 100ms }}\n",
                servers_yaml(&servers)
            ),
        )
        .start()
        .await
}

/// A tenant's system prompt of about 600 tokens.
fn system(tenant: &str) -> String {
    format!("You are the assistant of tenant {tenant}; answer from its handbook. ").repeat(35)
}

/// Turn `turn` of a tenant's chat (the history of the turns before it included), sent to
/// `addr` (the daemon, or a node directly).
async fn ask(addr: SocketAddr, tenant: &str, turn: usize) -> Response {
    let mut messages = vec![json!({"role": "system", "content": system(tenant)})];
    for t in 0..=turn {
        messages.push(json!({"role": "user", "content": format!("question {t} of the chat")}));
        if t < turn {
            messages.push(json!({"role": "assistant", "content": format!("answer {t}")}));
        }
    }
    let body = serde_json::to_vec(&json!({"model": "m", "max_tokens": 4, "messages": messages}))
        .expect("json");
    let mut req =
        Request::post("lb.test", "/v1/chat/completions").header("Content-Type", "application/json");
    req.body = body;
    let r = http_request(addr, &req).await;
    assert_eq!(r.status, 200, "{}", r.text());
    r
}

/// Drops a node's prefix cache (retried while a finished request still holds its blocks).
async fn reset(node: &SimHandle) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !node.reset_prefix_cache() {
        assert!(Instant::now() < deadline, "the node's cache stays in use");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn node_of(r: &Response) -> String {
    r.header("x-sim-node").expect("x-sim-node").to_string()
}

async fn metrics(d: &Daemon) -> String {
    get(d.admin.expect("admin"), "/metrics", &[]).await.text()
}

/// A gauge's value for `server` in the metrics text (`extra`: its other labels, sorted).
fn gauge(text: &str, family: &str, server: SocketAddr, extra: &str) -> Option<f64> {
    let head = format!("{family}{{server=\"{server}\",{extra}upstream=\"app\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&head))
        .and_then(|v| v.trim().parse().ok())
}

fn kv_state(text: &str, server: SocketAddr, state: &str) -> bool {
    gauge(
        text,
        "ferrogate_inference_kv_events_state",
        server,
        &format!("state=\"{state}\","),
    ) == Some(1.0)
}

fn kv_blocks(text: &str, server: SocketAddr) -> f64 {
    gauge(text, "ferrogate_inference_kv_events_blocks", server, "").unwrap_or(0.0)
}

/// Polls the metrics until `done` holds; panics with them after 20 s. `poke` runs before each
/// look (a request that makes a node publish, for subscribers that may have joined late).
async fn wait_metrics<F, P, Fut>(d: &Daemon, what: &str, done: F, mut poke: P) -> String
where
    F: Fn(&str) -> bool,
    P: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let deadline = Instant::now() + Duration::from_secs(20);
    for round in 0.. {
        poke(round).await;
        let text = metrics(d).await;
        if done(&text) {
            return text;
        }
        assert!(Instant::now() < deadline, "never {what}:\n{text}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    unreachable!()
}

#[test]
fn the_daemon_hashes_blocks_as_the_simulated_engine_does() {
    // The same sha256_cbor chain, for any seed and token ids of any width.
    let tokens: Vec<u32> = (0..200u32)
        .map(|i| i.wrapping_mul(2_654_435_761) >> 8)
        .collect();
    for seed in ["0", "42"] {
        let theirs = ferrogate_sim::block_hash::block_hashes(
            &ferrogate_sim::block_hash::none_hash(seed),
            &tokens,
            16,
        );
        assert_eq!(block_hash::block_hashes(seed, &tokens, 16), theirs);
    }
    // A first message rendered alone (no generation prompt), as the daemon asks `/tokenize`
    // for it, is the head of every prompt that starts with it, but for its last token.
    let message = |role: &str, content: &str| ChatMessage {
        role: role.into(),
        content: content.into(),
    };
    let lead = encode(&render_chat(&[message("system", &system("t"))], false));
    let whole = encode(&render_chat(
        &[message("system", &system("t")), message("user", "hi")],
        true,
    ));
    let head = &lead[..lead.len() - 1];
    assert_eq!(&whole[..head.len()], head);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_ups_go_where_the_events_say_the_blocks_are() {
    let x = node(true).await;
    let y = node(true).await;
    let d = daemon(&[&x, &y]).await;
    let lb = d.extra("lb");
    // The first turn: the approximate index remembers where it went; the engine's tokens for
    // the system prompt are asked for meanwhile.
    let home = node_of(&ask(lb, "t", 0).await);
    let (home, other) = if home == x.addr().to_string() {
        (&x, &y)
    } else {
        (&y, &x)
    };
    // The truth moves behind the daemon's back: the home node drops its cache, the other one
    // serves the tenant directly.
    reset(home).await;
    ask(other.addr(), "t", 0).await;
    let text = wait_metrics(
        &d,
        "exact on both nodes, the home empty, the other holding the prompt",
        |m| {
            kv_state(m, home.addr(), "exact")
                && kv_state(m, other.addr(), "exact")
                && kv_blocks(m, home.addr()) == 0.0
                && kv_blocks(m, other.addr()) > 30.0
                && m.contains(
                    "ferrogate_inference_kv_tokenize_total{result=\"ok\",upstream=\"app\"}",
                )
        },
        |_| async {},
    )
    .await;
    assert!(
        text.contains("ferrogate_inference_kv_events_batches_total{kind=\"live\","),
        "{text}"
    );
    let hits_before = other.stats().prefix_cache_hit_tokens;
    for turn in 1..4 {
        assert_eq!(
            node_of(&ask(lb, "t", turn).await),
            other.addr().to_string(),
            "turn {turn} follows the blocks"
        );
    }
    assert!(other.stats().prefix_cache_hit_tokens >= hits_before + 3 * 500);
    let s = status(&d).await;
    assert_eq!(
        server_of(&s, "app", other.addr())["kv_events"],
        "exact",
        "{s}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_join_replays_an_unreplayable_gap_falls_back_and_a_clear_recovers() {
    let replaying = node(true).await;
    let bare = node(false).await;
    // Both publish before the daemon subscribes: batches it can only get by replay.
    ask(replaying.addr(), "early", 0).await;
    ask(bare.addr(), "early", 0).await;
    let d = daemon(&[&replaying, &bare]).await;
    let text = wait_metrics(
        &d,
        "the replayed stream exact and the other one fallen back",
        |m| kv_state(m, replaying.addr(), "exact") && kv_state(m, bare.addr(), "fallback_gap"),
        // New prompts, so each poke publishes a batch on both.
        |round| {
            let (a, b) = (replaying.addr(), bare.addr());
            async move {
                let tenant = format!("poke {round}");
                ask(a, &tenant, 0).await;
                ask(b, &tenant, 0).await;
            }
        },
    )
    .await;
    // The replay brought the blocks stored before the daemon listened.
    let early = encode(&render_chat(
        &[ChatMessage {
            role: "system".into(),
            content: system("early"),
        }],
        false,
    ));
    assert!(
        kv_blocks(&text, replaying.addr()) >= (early.len() / 16) as f64,
        "{text}"
    );
    assert_eq!(kv_blocks(&text, bare.addr()), 0.0, "{text}");
    assert!(
        text.contains("ferrogate_inference_kv_events_batches_total{kind=\"replayed\","),
        "{text}"
    );
    let s = status(&d).await;
    assert_eq!(
        server_of(&s, "app", bare.addr())["kv_events"],
        "fallback_gap",
        "{s}"
    );
    // A cache clear is news the stream can start over from.
    reset(&bare).await;
    wait_metrics(
        &d,
        "exact after the clear",
        |m| kv_state(m, bare.addr(), "exact"),
        |_| async {},
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publisher_silent_while_its_node_serves_falls_back_until_it_speaks() {
    let only = node(true).await;
    let d = daemon(&[&only]).await;
    let lb = d.extra("lb");
    let text = wait_metrics(
        &d,
        "exact",
        |m| kv_state(m, only.addr(), "exact"),
        |round| async move {
            ask(lb, &format!("warm {round}"), 0).await;
        },
    )
    .await;
    assert!(kv_blocks(&text, only.addr()) > 0.0, "{text}");
    // The same request again and again: all of it cached, nothing published, while the node
    // serves. Past the silence limit the daemon stops trusting the stream.
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        ask(lb, "warm 0", 0).await;
        let text = metrics(&d).await;
        if kv_state(&text, only.addr(), "fallback_silent") {
            assert_eq!(kv_blocks(&text, only.addr()), 0.0, "{text}");
            break;
        }
        assert!(Instant::now() < deadline, "never silent:\n{text}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let s = status(&d).await;
    assert_eq!(
        server_of(&s, "app", only.addr())["kv_events"],
        "fallback_silent",
        "{s}"
    );
    // The next batch follows the last one seen: nothing was lost, the set is exact again.
    ask(lb, "something new", 0).await;
    wait_metrics(
        &d,
        "exact again",
        |m| kv_state(m, only.addr(), "exact"),
        |_| async {},
    )
    .await;
}
