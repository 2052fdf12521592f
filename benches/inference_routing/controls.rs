//! The control scenarios: `random` (no shared prefixes: cache_aware must be no worse than
//! least_inflight), `hot` (one tenant takes half the chats: its load must spill), `kill` (a node
//! dies mid-run: streams cut, traffic moves), `add` (a node joins: how many chats move) and
//! `overhead` (TTFT through ferrogate vs straight to a node).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use ferrogate_sim::SimConfig;

use super::client::{self, Status};
use super::cluster::Daemon;
use super::report::{self, percentile, secs};
use super::runner::{Event, Record};
use super::workload::{self, Shape, MODEL};
use super::{cluster, policy, run_on, run_policy, Knobs};

/// System prompt tokens of the `add` control.
const ADD_SYSTEM_TOKENS: usize = 1_000;
/// Prompt tokens of the `random` control (each request a fresh prompt).
const RANDOM_PROMPT_TOKENS: usize = 1_500;

pub async fn random(knobs: &Knobs) {
    let shape = Shape {
        random_prompts: true,
        system_tokens: RANDOM_PROMPT_TOKENS,
        ..knobs.shape()
    };
    let uncached = RANDOM_PROMPT_TOKENS as f64;
    let peak = knobs.nodes as f64 * knobs.node_capacity(uncached);
    let plan = knobs.plan(knobs.control_seconds, peak);
    println!(
        "\n## random: every prompt new ({RANDOM_PROMPT_TOKENS} tokens, no chat id), rate to \
         {peak:.1} req/s\n"
    );
    let mut rows = Vec::new();
    for name in ["least_inflight", "cache_aware"] {
        rows.push(run_policy(knobs, shape.clone(), policy(name), plan).await.0);
    }
    println!("{}", report::table(&rows));
}

/// Tenant of a chat id `chat-T-N`.
fn tenant(record: &Record) -> Option<usize> {
    record.chat_id.as_deref()?.split('-').nth(1)?.parse().ok()
}

pub async fn hot(knobs: &Knobs) {
    let shape = Shape {
        hot_share: 0.5,
        ..knobs.shape()
    };
    let peak = 0.6 * knobs.peak_rate();
    let plan = knobs.plan(knobs.control_seconds, peak);
    println!("\n## hot: tenant 0 opens half the chats, rate to {peak:.1} req/s\n");
    println!("| policy | out tok/s | TTFT p90 | rejected | busiest node / mean | nodes serving tenant 0 | tenant 0 requests on its busiest node |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for name in ["least_inflight", "cache_aware"] {
        let (summary, run) = run_policy(knobs, shape.clone(), policy(name), plan).await;
        let in_hold = |r: &Record| r.done_at() >= plan.ramp;
        let loads = report::per_node(&run.records, in_hold);
        let max = loads.values().copied().max().unwrap_or(0) as f64;
        let mean = loads.values().sum::<usize>() as f64 / knobs.nodes as f64;
        let hot_nodes = report::per_node(&run.records, |r| in_hold(r) && tenant(r) == Some(0));
        if std::env::var_os("BENCH_DEBUG").is_some() {
            eprintln!("{}: all {loads:?} tenant 0 {hot_nodes:?}", summary.label);
        }
        let hot_total: usize = hot_nodes.values().sum();
        let hot_max = hot_nodes.values().copied().max().unwrap_or(0);
        println!(
            "| {} | {:.0} | {} | {} | {:.2} | {} | {:.0}% |",
            summary.label,
            summary.tokens_per_sec,
            secs(summary.ttft.1),
            summary.rejected,
            max / mean.max(1e-9),
            hot_nodes.len(),
            100.0 * hot_max as f64 / hot_total.max(1) as f64
        );
    }
}

pub async fn kill(knobs: &Knobs) {
    let peak = 0.5 * knobs.peak_rate();
    let plan = knobs.plan(knobs.control_seconds, peak);
    let kill_at = plan.seconds.mul_f64(0.6);
    let p = policy("cache_aware");
    let c = cluster(knobs, p, knobs.nodes, knobs.nodes).await;
    let victim = c.addrs[0].to_string();
    let nodes = c.nodes.clone();
    let events = vec![Event {
        at: kill_at,
        action: Box::new(move || {
            // Dropping the handle closes the listener and every open connection.
            drop(nodes.lock().expect("nodes lock")[0].take());
        }),
    }];
    let (_, run) = run_on(&c, knobs, knobs.shape(), p, plan, events).await;
    let grace = Duration::from_secs(1);
    let before = |r: &Record| r.done_at() >= plan.ramp && r.done_at() < kill_at;
    let after = |r: &Record| r.sent_at >= kill_at + grace;
    let share = |keep: &dyn Fn(&Record) -> bool| {
        let loads = report::per_node(&run.records, keep);
        let total: usize = loads.values().sum();
        100.0 * loads.get(&victim).copied().unwrap_or(0) as f64 / total.max(1) as f64
    };
    let around = |r: &Record| r.sent_at < kill_at && r.done_at() >= kill_at;
    let count = |status: Status, keep: &dyn Fn(&Record) -> bool| {
        run.records
            .iter()
            .filter(|r| keep(r) && r.outcome.status == status)
            .count()
    };
    let ttft = |keep: &dyn Fn(&Record) -> bool| {
        let mut t: Vec<f64> = run
            .records
            .iter()
            .filter(|r| keep(r))
            .filter_map(|r| r.outcome.ttft.map(|d| d.as_secs_f64()))
            .collect();
        t.sort_by(f64::total_cmp);
        (percentile(&t, 0.5), percentile(&t, 0.9))
    };
    if std::env::var_os("BENCH_DEBUG").is_some() {
        eprintln!(
            "victim {victim}: before {:?} after {:?}",
            report::per_node(&run.records, before),
            report::per_node(&run.records, after)
        );
        for r in run
            .records
            .iter()
            .filter(|r| r.outcome.status != Status::Done)
        {
            eprintln!(
                "  {:?} at {:?}: {:?} {}",
                r.outcome.status, r.sent_at, r.outcome.node, r.outcome.http_status
            );
        }
    }
    let (b50, b90) = ttft(&before);
    let (a50, a90) = ttft(&after);
    println!(
        "\n## kill: cache_aware, node 0 of {} dropped at {:.0} s, rate to {peak:.1} req/s\n",
        knobs.nodes,
        kill_at.as_secs_f64()
    );
    println!("| | before the kill (finished) | after (+1 s, sent) |\n|---|---:|---:|");
    println!(
        "| share served by the killed node | {:.0}% | {:.0}% |",
        share(&before),
        share(&after)
    );
    println!(
        "| TTFT p50 / p90 | {} / {} | {} / {} |",
        secs(b50),
        secs(b90),
        secs(a50),
        secs(a90)
    );
    println!(
        "| failed / rejected | {} / {} | {} / {} |",
        count(Status::Failed, &before),
        count(Status::Rejected, &before),
        count(Status::Failed, &after),
        count(Status::Rejected, &after)
    );
    let cut_early = run
        .records
        .iter()
        .filter(|r| around(r) && r.outcome.status == Status::Cut && r.outcome.ttft.is_none())
        .count();
    println!(
        "\nStreams cut by the kill: {} ({cut_early} of them before their first token, queued on \
         the node); requests in flight across it that completed: {}; failed with no response: {}.",
        count(Status::Cut, &around),
        count(Status::Done, &around),
        count(Status::Failed, &around)
    );
}

pub async fn add(knobs: &Knobs) {
    // Short system prompts and a light load (a third of what the affinity baseline serves with
    // about 60% of prompt tokens missed): near saturation the affinity overflow (past 1.25x the
    // mean load) moves chats between turns by itself, which would hide what the add moves.
    // Run longer instead, to see enough chats on both sides.
    let shape = Shape {
        system_tokens: ADD_SYSTEM_TOKENS,
        ..knobs.shape()
    };
    let missed = 0.6 * ADD_SYSTEM_TOKENS as f64 + 200.0;
    let peak = 0.3 * knobs.nodes as f64 * knobs.node_capacity(missed);
    let seconds = knobs.control_seconds * 4.0;
    let plan = knobs.plan(seconds, peak);
    let add_at = plan.seconds.mul_f64(0.55);
    println!(
        "\n## add: a node joins {} at {:.0} s (config reload), {ADD_SYSTEM_TOKENS}-token system \
         prompts, rate to {peak:.1} req/s\n",
        knobs.nodes,
        add_at.as_secs_f64()
    );
    println!("| policy | chats seen on both sides | moved across the add | moved between turns before it (churn) | new node's share after |");
    println!("|---|---:|---:|---:|---:|");
    for name in ["least_inflight+affinity", "cache_aware"] {
        let p = policy(name);
        let c = cluster(knobs, p, knobs.nodes + 1, knobs.nodes).await;
        let daemon = c.daemon.clone();
        let all = c.addrs.clone();
        let events = vec![Event {
            at: add_at,
            action: Box::new(move || daemon.reload(&all)),
        }];
        let (_, run) = run_on(&c, knobs, shape.clone(), p, plan, events).await;
        // Each chat's turns in order: (sent, node).
        let mut chats: BTreeMap<String, Vec<(Duration, String)>> = BTreeMap::new();
        for r in run.records.iter().filter(|r| r.ok()) {
            if let (Some(id), Some(node)) = (&r.chat_id, &r.outcome.node) {
                chats
                    .entry(id.clone())
                    .or_default()
                    .push((r.sent_at, node.clone()));
            }
        }
        let (mut both, mut moved, mut pairs, mut churn) = (0, 0, 0, 0);
        for turns in chats.values_mut() {
            turns.sort();
            for w in turns.windows(2) {
                if w[1].0 < add_at {
                    pairs += 1;
                    churn += usize::from(w[0].1 != w[1].1);
                }
            }
            let last_before = turns.iter().rev().find(|t| t.0 < add_at);
            let first_after = turns
                .iter()
                .find(|t| t.0 >= add_at + Duration::from_millis(500));
            if let (Some(b), Some(a)) = (last_before, first_after) {
                both += 1;
                moved += usize::from(b.1 != a.1);
            }
        }
        let newcomer = c.addrs[knobs.nodes].to_string();
        let after = report::per_node(&run.records, |r| r.sent_at >= add_at);
        let total: usize = after.values().sum();
        println!(
            "| {} | {} | {:.0}% | {:.0}% | {:.0}% |",
            p.label(),
            both,
            100.0 * moved as f64 / both.max(1) as f64,
            100.0 * churn as f64 / pairs.max(1) as f64,
            100.0 * after.get(&newcomer).copied().unwrap_or(0) as f64 / total.max(1) as f64
        );
    }
    println!(
        "\n(1/N with N = {} nodes after the add is {:.0}%.)",
        knobs.nodes + 1,
        100.0 / (knobs.nodes + 1) as f64
    );
}

/// Requests each way in `overhead`.
const OVERHEAD_REQUESTS: usize = 300;

pub async fn overhead(knobs: &Knobs) {
    let node = ferrogate_sim::start(SimConfig {
        models: vec![MODEL.to_string()],
        prefill_tokens_per_sec: 1e12,
        decode_ms: 0.0,
        ..SimConfig::default()
    })
    .await
    .expect("start simulator");
    let daemon = Daemon::start(&[node.addr()], policy("cache_aware"), knobs.admission()).await;
    let client = client::client();
    let mut rng = fastrand::Rng::with_seed(knobs.seed);
    let system = workload::words(&mut rng, knobs.system_tokens * workload::CHARS_PER_TOKEN);
    let body = serde_json::to_vec(&serde_json::json!({
        "model": MODEL, "stream": true, "max_tokens": 4,
        "messages": [{"role": "system", "content": system}, {"role": "user", "content": "hello"}],
    }))
    .expect("body");
    let (mut direct, mut proxied) = (Vec::new(), Vec::new());
    let started = Instant::now();
    for i in 0..OVERHEAD_REQUESTS + 20 {
        for (addr, out) in [(node.addr(), &mut direct), (daemon.lb, &mut proxied)] {
            let o = client::chat(&client, addr, body.clone(), Some("overhead")).await;
            assert_eq!(o.status, Status::Done, "overhead request failed: {o:?}");
            if i >= 20 {
                out.push(o.ttft.expect("a first token").as_secs_f64());
            }
        }
    }
    direct.sort_by(f64::total_cmp);
    proxied.sort_by(f64::total_cmp);
    let (d50, p50) = (percentile(&direct, 0.5), percentile(&proxied, 0.5));
    println!(
        "\n## overhead: TTFT of one {}-token streamed chat, {} each way, alternating, one node \
         with instant prefill ({:.1} s)\n",
        knobs.system_tokens,
        OVERHEAD_REQUESTS,
        started.elapsed().as_secs_f64()
    );
    println!("| path | TTFT p50 | TTFT p90 | TTFT p99 |\n|---|---:|---:|---:|");
    for (name, v) in [
        ("direct to the node", &direct),
        ("through ferrogate (cache_aware)", &proxied),
    ] {
        println!(
            "| {name} | {:.3} ms | {:.3} ms | {:.3} ms |",
            percentile(v, 0.5) * 1e3,
            percentile(v, 0.9) * 1e3,
            percentile(v, 0.99) * 1e3
        );
    }
    println!(
        "\nAdded by the proxy at the median: {:.3} ms (target < 1 ms).",
        (p50 - d50) * 1e3
    );
}
