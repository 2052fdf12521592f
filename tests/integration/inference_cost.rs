//! `cache_aware`'s cost model through the real daemon against simulated GPU nodes: a tenant's
//! follow-ups stay on the node holding its prefix while that node has free batch slots, and a
//! hot tenant gets a second node only once its node is saturated and its queue grows; the
//! spread shows in `/status/upstreams.json`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;

use ferrogate_sim::{SimConfig, SimHandle};
use serde_json::json;

use crate::balance_support::{lb_builder, servers_yaml, status};
use crate::client::{http_request, Request, Response};
use crate::harness::Daemon;

async fn node(tune: impl FnOnce(&mut SimConfig)) -> SimHandle {
    let mut cfg = SimConfig {
        models: vec!["m".into()],
        default_max_tokens: 8,
        ..SimConfig::default()
    };
    tune(&mut cfg);
    ferrogate_sim::start(cfg).await.expect("start simulator")
}

async fn daemon(nodes: &[SimHandle]) -> Daemon {
    let servers: Vec<(SocketAddr, &str)> = nodes.iter().map(|n| (n.addr(), "")).collect();
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

/// A tenant's system prompt of about 2,500 tokens.
fn system(tenant: usize) -> String {
    format!("You are the assistant of tenant {tenant}; follow its handbook closely. ").repeat(140)
}

async fn ask(lb: SocketAddr, tenant: usize, turn: usize) -> Response {
    let body = serde_json::to_vec(&json!({
        "model": "m",
        "max_tokens": 8,
        "messages": [
            {"role": "system", "content": system(tenant)},
            {"role": "user", "content": format!("question {turn} of tenant {tenant}")},
        ],
    }))
    .expect("json");
    let mut req =
        Request::post("lb.test", "/v1/chat/completions").header("Content-Type", "application/json");
    req.body = body;
    let r = http_request(lb, &req).await;
    assert_eq!(r.status, 200, "{}", r.text());
    r
}

fn node_of(r: &Response) -> String {
    r.header("x-sim-node").expect("x-sim-node").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_ups_stay_on_the_holder_while_it_has_free_slots() {
    let mut nodes = Vec::new();
    for _ in 0..3 {
        nodes.push(
            node(|c| {
                c.max_num_seqs = 8;
                c.decode_ms = 5.0;
                c.prefill_tokens_per_sec = 50_000.0;
            })
            .await,
        );
    }
    let d = daemon(&nodes).await;
    let lb = d.extra("lb");
    // Four tenants, three requests of each in flight at a time: never more than 8 on a node.
    let mut seen: BTreeMap<usize, BTreeSet<String>> = BTreeMap::new();
    for round in 0..5 {
        let mut wave = Vec::new();
        for tenant in 0..4 {
            for k in 0..3 {
                wave.push(tokio::spawn(async move {
                    (tenant, node_of(&ask(lb, tenant, round * 3 + k).await))
                }));
            }
        }
        for task in wave {
            let (tenant, node) = task.await.expect("join");
            seen.entry(tenant).or_default().insert(node);
        }
    }
    for (tenant, holders) in &seen {
        assert_eq!(holders.len(), 1, "tenant {tenant} moved: {holders:?}");
    }
    let s = status(&d).await;
    let prefixes = s["upstreams"][0]["prefixes"].as_array().expect("prefixes");
    assert_eq!(prefixes.len(), 4, "{s}");
    assert!(prefixes.iter().all(|p| p["spread"] == 1), "{s}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hot_tenant_is_replicated_only_under_saturation() {
    let mut nodes = Vec::new();
    for _ in 0..3 {
        nodes.push(
            node(|c| {
                // Two slots, 0.16 s of decode per request, a 2,500-token prompt recomputed in
                // 0.25 s: a queue of a few requests costs more than a recompute.
                c.max_num_seqs = 2;
                c.decode_ms = 20.0;
                c.prefill_tokens_per_sec = 10_000.0;
            })
            .await,
        );
    }
    let d = daemon(&nodes).await;
    let lb = d.extra("lb");
    // One at a time: the tenant stays on one node.
    let mut light = BTreeSet::new();
    for turn in 0..6 {
        light.insert(node_of(&ask(lb, 0, turn).await));
    }
    assert_eq!(light.len(), 1, "{light:?}");
    // Waves of twelve at once: the node's two slots saturate, its queue grows, and the tenant
    // gets another node (once the node's metrics have shown its batch size).
    let mut heavy = BTreeSet::new();
    for wave in 0..6 {
        let tasks: Vec<_> = (0..12)
            .map(|k| tokio::spawn(async move { node_of(&ask(lb, 0, 100 + wave * 12 + k).await) }))
            .collect();
        for task in tasks {
            heavy.insert(task.await.expect("join"));
        }
        if heavy.len() > 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(heavy.len() >= 2, "never replicated: {heavy:?}");
    assert!(heavy.is_superset(&light), "the home kept serving");
    let metrics = crate::balance_support::get(d.admin.expect("admin"), "/metrics", &[]).await;
    let text = metrics.text();
    assert!(
        text.contains("reason=\"replicate\",upstream=\"app\"}"),
        "{text}"
    );
    assert!(
        text.contains("ferrogate_inference_prefix_spread{stat=\"max\",upstream=\"app\"}"),
        "{text}"
    );
}
