//! Turning a run's records into numbers: throughput and TTFT percentiles over a window, outcome
//! counts, per-node shares; and the markdown tables the bench prints.

use std::collections::BTreeMap;
use std::time::Duration;

use super::client::Status;
use super::runner::{Record, Run};

/// One policy's numbers over a window of a run.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    pub label: String,
    pub sent: usize,
    pub done: usize,
    pub rejected: usize,
    pub failed: usize,
    pub cut: usize,
    pub tokens_per_sec: f64,
    pub requests_per_sec: f64,
    /// TTFT percentiles in seconds (p50, p90, p99).
    pub ttft: (f64, f64, f64),
    /// Prefix-cache hit tokens over query tokens, on the nodes, over the window.
    pub hit_rate: f64,
}

/// Numbers of the requests sent in `[from, to)` (throughput: those finishing in it).
pub fn summarize(
    label: &str,
    run: &Run,
    from: Duration,
    to: Duration,
    hits: (u64, u64),
) -> Summary {
    let span = (to - from).as_secs_f64().max(1e-9);
    let sent_in = |r: &Record| r.sent_at >= from && r.sent_at < to;
    let finished: Vec<&Record> = run
        .records
        .iter()
        .filter(|r| r.ok() && r.done_at() >= from && r.done_at() < to)
        .collect();
    let count = |status: Status| {
        run.records
            .iter()
            .filter(|r| sent_in(r) && r.outcome.status == status)
            .count()
    };
    let mut ttfts: Vec<f64> = run
        .records
        .iter()
        .filter(|r| sent_in(r))
        .filter_map(|r| r.outcome.ttft.map(|t| t.as_secs_f64()))
        .collect();
    ttfts.sort_by(f64::total_cmp);
    Summary {
        label: label.to_string(),
        sent: run.sent.iter().filter(|t| **t >= from && **t < to).count(),
        done: count(Status::Done),
        rejected: count(Status::Rejected),
        failed: count(Status::Failed),
        cut: count(Status::Cut),
        tokens_per_sec: finished
            .iter()
            .map(|r| f64::from(r.outcome.tokens))
            .sum::<f64>()
            / span,
        requests_per_sec: finished.len() as f64 / span,
        ttft: (
            percentile(&ttfts, 0.5),
            percentile(&ttfts, 0.9),
            percentile(&ttfts, 0.99),
        ),
        hit_rate: if hits.1 == 0 {
            0.0
        } else {
            hits.0 as f64 / hits.1 as f64
        },
    }
}

/// The `q` quantile of sorted values (nearest rank); NaN when empty.
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// Successful requests per node among `records` matching `keep`.
pub fn per_node(records: &[Record], keep: impl Fn(&Record) -> bool) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for r in records.iter().filter(|r| r.ok() && keep(r)) {
        if let Some(node) = &r.outcome.node {
            *out.entry(node.clone()).or_default() += 1;
        }
    }
    out
}

/// The policy table.
pub fn table(rows: &[Summary]) -> String {
    let mut out = String::from(
        "| policy | sent | done | rejected | failed/cut | out tok/s | req/s | TTFT p50 | TTFT p90 | TTFT p99 | prefix hit |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in rows {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {}/{} | {:.0} | {:.2} | {} | {} | {} | {:.0}% |\n",
            r.label,
            r.sent,
            r.done,
            r.rejected,
            r.failed,
            r.cut,
            r.tokens_per_sec,
            r.requests_per_sec,
            secs(r.ttft.0),
            secs(r.ttft.1),
            secs(r.ttft.2),
            r.hit_rate * 100.0
        ));
    }
    out
}

/// Seconds as `1.23 s` or `45 ms`.
pub fn secs(s: f64) -> String {
    if s.is_nan() {
        "–".to_string()
    } else if s >= 1.0 {
        format!("{s:.2} s")
    } else {
        format!("{:.0} ms", s * 1000.0)
    }
}
