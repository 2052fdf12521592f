//! Routing benchmark for inference upstreams: simulated GPU nodes (`ferrogate_sim`) behind the
//! real `ferrogate` daemon, driven by a multi-tenant chat workload (long per-tenant system
//! prompts, multi-turn chats with growing history, Poisson arrivals ramping to saturation,
//! streamed answers timed at the client). Scenarios: `main` (every policy at saturation),
//! `random`, `hot`, `kill`, `add` (controls) and `overhead` (TTFT through the proxy vs direct);
//! none or `all` runs them all. `peers` (named alone; `benches/inference_peers.py` installs the
//! routers and runs it) sets ferrogate against sglang-router and vllm-router. Knobs are `BENCH_*`
//! environment variables (see [`Knobs`]).
//!
//! `cargo bench --bench inference_routing -j 1 -- main`

// A benchmark: a broken setup should stop it loudly, with the reason.
#![allow(clippy::expect_used)]

#[path = "inference_routing/client.rs"]
mod client;
#[path = "inference_routing/cluster.rs"]
mod cluster;
#[path = "inference_routing/controls.rs"]
mod controls;
#[path = "inference_routing/peers.rs"]
mod peers;
#[path = "inference_routing/report.rs"]
mod report;
#[path = "inference_routing/runner.rs"]
mod runner;
#[path = "inference_routing/workload.rs"]
mod workload;

use std::str::FromStr;
use std::time::Duration;

use cluster::{Admission, Daemon, NodeShape, Policy};
use report::Summary;
use runner::{Event, Plan};
use workload::{Shape, Workload};

/// Tokens per simulator KV block.
const BLOCK_TOKENS: usize = 16;
/// Chat history tokens per batch slot the node's cache has room for beyond the system prompts.
const HISTORY_HEADROOM_TOKENS: usize = 1_000;

/// The benchmark's settings, each from `BENCH_<NAME>` when set.
#[derive(Debug, Clone)]
pub struct Knobs {
    /// Length of each `main` run (s); the rate ramps over the first 40%, then holds.
    pub seconds: f64,
    /// Length of each control run (s).
    pub control_seconds: f64,
    pub nodes: usize,
    pub tenants: usize,
    pub system_tokens: usize,
    /// Node prefill throughput (tokens/s, shared by its batch).
    pub prefill: f64,
    pub decode_ms: f64,
    pub max_num_seqs: usize,
    pub output_min: u32,
    pub output_max: u32,
    /// System prompts per node the cache holds, as a multiple of tenants / nodes.
    pub cache_factor: f64,
    /// Peak arrival rate (req/s); 0 = 1.15 × the estimated capacity with every prefix cached.
    pub rate: f64,
    pub seed: u64,
    /// Policies of `main`, comma-separated (`round_robin`, `round_robin+affinity`, ...).
    pub policies: String,
    /// The `peers` base rate (req/s): near round-robin saturation of the default nodes.
    pub peer_rate: f64,
}

fn env<T: FromStr>(name: &str, default: T) -> T {
    std::env::var(format!("BENCH_{name}"))
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

impl Knobs {
    fn from_env() -> Self {
        Knobs {
            seconds: env("SECONDS", 24.0),
            control_seconds: env("CONTROL_SECONDS", 12.0),
            nodes: env("NODES", 4),
            tenants: env("TENANTS", 16),
            system_tokens: env("SYSTEM_TOKENS", 5_000),
            prefill: env("PREFILL", 4_000.0),
            decode_ms: env("DECODE_MS", 15.0),
            max_num_seqs: env("MAX_NUM_SEQS", 8),
            output_min: env("OUTPUT_MIN", 32),
            output_max: env("OUTPUT_MAX", 64),
            cache_factor: env("CACHE_FACTOR", 1.3),
            rate: env("RATE", 0.0),
            seed: env("SEED", 7),
            policies: env(
                "POLICIES",
                "round_robin,round_robin+affinity,least_inflight,metrics,cache_aware".to_string(),
            ),
            peer_rate: env("PEER_RATE", 4.5),
        }
    }

    pub fn node_shape(&self) -> NodeShape {
        let prompts = self.cache_factor * self.tenants as f64 / self.nodes as f64;
        let system_blocks = (prompts * self.system_tokens as f64 / BLOCK_TOKENS as f64).ceil();
        NodeShape {
            max_num_seqs: self.max_num_seqs,
            cache_blocks: system_blocks as usize
                + self.max_num_seqs * HISTORY_HEADROOM_TOKENS / BLOCK_TOKENS,
            prefill_tokens_per_sec: self.prefill,
            decode_ms: self.decode_ms,
        }
    }

    pub fn shape(&self) -> Shape {
        Shape {
            tenants: self.tenants,
            system_tokens: self.system_tokens,
            user_tokens: (50, 250),
            output_tokens: (self.output_min, self.output_max),
            turns: (3, 8),
            hot_share: 0.0,
            random_prompts: false,
        }
    }

    pub fn admission(&self) -> Admission {
        Admission {
            max_inflight: 2 * self.max_num_seqs,
            queue_size: 4 * self.nodes * self.max_num_seqs,
            queue_timeout: Duration::from_secs(10),
        }
    }

    /// Requests per second one node serves when its prompts' prefixes are cached (only the new
    /// user message and the last answer to prefill) and when nothing is (`uncached` tokens).
    pub fn node_capacity(&self, uncached: f64) -> f64 {
        let out = f64::from(self.output_min + self.output_max) / 2.0;
        let batch = self.max_num_seqs as f64;
        let decode = out * self.decode_ms / 1000.0 * (1.0 + (batch - 1.0) / 16.0);
        let slot = decode + uncached / self.prefill;
        (batch / slot).min(self.prefill / uncached)
    }

    /// The `main` peak rate.
    pub fn peak_rate(&self) -> f64 {
        if self.rate > 0.0 {
            return self.rate;
        }
        let uncached = 150.0 + f64::from(self.output_min + self.output_max) / 2.0;
        1.15 * self.nodes as f64 * self.node_capacity(uncached)
    }

    pub fn plan(&self, seconds: f64, peak: f64) -> Plan {
        Plan {
            seconds: Duration::from_secs_f64(seconds),
            ramp: Duration::from_secs_f64(seconds * 0.4),
            start_rate: peak * 0.2,
            peak_rate: peak,
        }
    }
}

pub fn policy(name: &str) -> Policy {
    let (balance, affinity) = match name.trim() {
        "round_robin" => ("round_robin", false),
        "round_robin+affinity" => ("round_robin", true),
        "least_inflight" => ("least_inflight", false),
        "least_inflight+affinity" => ("least_inflight", true),
        "metrics" => ("metrics", false),
        "metrics+affinity" => ("metrics", true),
        "cache_aware" => ("cache_aware", true),
        other => panic!("unknown policy {other:?}"),
    };
    Policy { balance, affinity }
}

/// Fresh simulated nodes (the first `listed` of them in the config) behind a fresh daemon.
pub struct Cluster {
    pub nodes: runner::Nodes,
    pub addrs: Vec<std::net::SocketAddr>,
    pub daemon: std::sync::Arc<Daemon>,
}

pub async fn cluster(knobs: &Knobs, policy: Policy, total: usize, listed: usize) -> Cluster {
    let mut handles = Vec::new();
    for _ in 0..total {
        handles.push(cluster::start_node(&knobs.node_shape()).await);
    }
    let addrs: Vec<_> = handles.iter().map(|h| h.addr()).collect();
    let daemon = Daemon::start(&addrs[..listed], policy, knobs.admission()).await;
    Cluster {
        nodes: runner::nodes(handles),
        addrs,
        daemon: std::sync::Arc::new(daemon),
    }
}

/// One run of `shape` through a fresh cluster of `knobs.nodes` nodes under `policy`,
/// summarized over the hold window (after the ramp), with the cluster's own `events`.
pub async fn run_policy(
    knobs: &Knobs,
    shape: Shape,
    policy: Policy,
    plan: Plan,
) -> (Summary, runner::Run) {
    let c = cluster(knobs, policy, knobs.nodes, knobs.nodes).await;
    run_on(&c, knobs, shape, policy, plan, Vec::new()).await
}

/// Drives `c` and summarizes the hold window; the prefix-cache rate is counted over it too.
pub async fn run_on(
    c: &Cluster,
    knobs: &Knobs,
    shape: Shape,
    policy: Policy,
    plan: Plan,
    mut events: Vec<Event>,
) -> (Summary, runner::Run) {
    let client = client::client();
    let mut workload = Workload::new(shape, knobs.seed);
    let snapshot = std::sync::Arc::new(std::sync::Mutex::new((0, 0)));
    {
        let nodes = c.nodes.clone();
        let snapshot = snapshot.clone();
        events.push(Event {
            at: plan.ramp,
            action: Box::new(move || {
                *snapshot.lock().expect("snapshot lock") = runner::cache_tokens(&nodes);
            }),
        });
    }
    let run = runner::drive(&client, c.daemon.lb, &mut workload, plan, events).await;
    let end = runner::cache_tokens(&c.nodes);
    let start = *snapshot.lock().expect("snapshot lock");
    let hits = (end.0.saturating_sub(start.0), end.1.saturating_sub(start.1));
    let summary = report::summarize(&policy.label(), &run, plan.ramp, plan.seconds, hits);
    (summary, run)
}

async fn scenario_main(knobs: &Knobs) {
    let peak = knobs.peak_rate();
    let plan = knobs.plan(knobs.seconds, peak);
    println!(
        "\n## main: every policy at saturation\n\n{} nodes, {} tenants × {}-token system prompts, \
         cache {} blocks/node, prefill {} tok/s, decode {} ms, max_num_seqs {}, output {}–{} \
         tokens; rate {:.1} → {:.1} req/s over {:.0} s, then held to {:.0} s (numbers over the \
         hold)\n",
        knobs.nodes,
        knobs.tenants,
        knobs.system_tokens,
        knobs.node_shape().cache_blocks,
        knobs.prefill,
        knobs.decode_ms,
        knobs.max_num_seqs,
        knobs.output_min,
        knobs.output_max,
        plan.start_rate,
        peak,
        plan.ramp.as_secs_f64(),
        plan.seconds.as_secs_f64()
    );
    let mut rows = Vec::new();
    for name in knobs.policies.split(',') {
        let (summary, _) = run_policy(knobs, knobs.shape(), policy(name), plan).await;
        eprintln!("  done: {}", summary.label);
        rows.push(summary);
    }
    println!("{}", report::table(&rows));
    let find = |label: &str| rows.iter().find(|r| r.label == label);
    if let (Some(ca), Some(rr)) = (find("cache_aware"), find("round_robin")) {
        println!(
            "cache_aware / round_robin: throughput {:.2}×, TTFT p90 {:.2}× lower, rejected {} vs {}",
            ca.tokens_per_sec / rr.tokens_per_sec,
            rr.ttft.1 / ca.ttft.1,
            ca.rejected,
            rr.rejected
        );
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let knobs = Knobs::from_env();
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let all = args.is_empty() || args.iter().any(|a| a == "all");
    let wants = |name: &str| all || args.iter().any(|a| a == name);
    println!("# inference routing benchmark");
    if wants("overhead") {
        controls::overhead(&knobs).await;
    }
    if wants("main") {
        scenario_main(&knobs).await;
    }
    if wants("random") {
        controls::random(&knobs).await;
    }
    if wants("hot") {
        controls::hot(&knobs).await;
    }
    if wants("kill") {
        controls::kill(&knobs).await;
    }
    if wants("add") {
        controls::add(&knobs).await;
    }
    // Needs the routers' virtual environment: only when named.
    if args.iter().any(|a| a == "peers") {
        peers::peers(&knobs).await;
    }
}
