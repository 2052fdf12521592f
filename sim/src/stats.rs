//! The node's counters: per-model gauges and totals behind `/metrics`, the [`SimStats`] snapshot
//! behind `GET /sim/stats` (and [`super::SimHandle::stats`]), and the TTFT histogram.

use std::collections::BTreeMap;

use serde::Serialize;

/// Upper bounds (seconds) of the TTFT histogram buckets (vLLM's).
pub const TTFT_BUCKETS: [f64; 22] = [
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
    20.0, 40.0, 80.0, 160.0, 640.0, 2560.0,
];

/// A Prometheus-style histogram over [`TTFT_BUCKETS`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Histogram {
    /// Observations per bucket (not cumulative); the last slot is +Inf.
    pub counts: [u64; TTFT_BUCKETS.len() + 1],
    pub sum: f64,
    pub count: u64,
}

impl Histogram {
    pub fn observe(&mut self, value: f64) {
        let slot = TTFT_BUCKETS
            .iter()
            .position(|&le| value <= le)
            .unwrap_or(TTFT_BUCKETS.len());
        self.counts[slot] += 1;
        self.sum += value;
        self.count += 1;
    }

    /// `(upper bound, cumulative count)` per finite bucket, as `_bucket` lines need them.
    pub fn cumulative(&self) -> Vec<(f64, u64)> {
        let mut total = 0;
        TTFT_BUCKETS
            .iter()
            .zip(self.counts.iter())
            .map(|(&le, &n)| {
                total += n;
                (le, total)
            })
            .collect()
    }
}

/// Counters of one model served by the node.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ModelCounters {
    pub running: usize,
    pub waiting: usize,
    pub requests: u64,
    /// Finished normally.
    pub success: u64,
    pub prompt_tokens: u64,
    pub generation_tokens: u64,
    /// Prompt tokens found in the prefix cache.
    pub prefix_hit_tokens: u64,
    /// Prompt tokens looked up in the prefix cache.
    pub prefix_query_tokens: u64,
    pub ttft: Histogram,
}

/// Totals across models.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    /// Completion requests received (any outcome).
    pub requests: u64,
    /// Completions delivered to the end.
    pub served: u64,
    /// Client went away before the end (mid-stream or while queued).
    pub cancelled: u64,
    /// Refused because the waiting queue was full.
    pub rejected: u64,
    /// Refused by the `error_rate` fault.
    pub injected_errors: u64,
    /// Connection dropped by the `kill_after_tokens` fault.
    pub killed: u64,
    /// Answered 400 or 404 (bad JSON, unknown model).
    pub bad_requests: u64,
}

/// Everything the node counts; lives behind one lock in [`super::node::Node`].
#[derive(Debug, Clone, Default)]
pub struct Counters {
    pub totals: Totals,
    pub models: BTreeMap<String, ModelCounters>,
    /// Headers of the most recent completion request (names lowercased; repeated ones joined
    /// by `, `).
    pub last_request_headers: BTreeMap<String, String>,
}

impl Counters {
    pub fn new(models: &[String]) -> Self {
        Counters {
            models: models
                .iter()
                .map(|m| (m.clone(), ModelCounters::default()))
                .collect(),
            ..Counters::default()
        }
    }

    /// The model's counters (a node only counts the models it serves; others land in a
    /// throwaway entry so callers need no error path).
    pub fn model(&mut self, model: &str) -> &mut ModelCounters {
        self.models.entry(model.to_string()).or_default()
    }

    pub fn running(&self) -> usize {
        self.models.values().map(|m| m.running).sum()
    }

    pub fn waiting(&self) -> usize {
        self.models.values().map(|m| m.waiting).sum()
    }
}

/// A snapshot of the node for tests and the demo (`GET /sim/stats` is its JSON).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SimStats {
    /// Outcome counters (flattened into the JSON: `{"requests":..,"cancelled":..}`).
    #[serde(flatten)]
    pub totals: Totals,
    /// Requests holding a batch slot now.
    pub running: usize,
    /// Requests queued for a slot now.
    pub waiting: usize,
    pub prefix_cache_hit_tokens: u64,
    pub prefix_cache_query_tokens: u64,
    /// Blocks referenced by running requests over capacity (0..1).
    pub kv_cache_usage: f64,
    /// Blocks resident in the prefix cache (referenced or not).
    pub cache_blocks_resident: usize,
    pub requests_by_model: BTreeMap<String, u64>,
    pub last_request_headers: BTreeMap<String, String>,
}

impl SimStats {
    pub fn build(counters: &Counters, kv_cache_usage: f64, cache_blocks_resident: usize) -> Self {
        let models = counters.models.values();
        SimStats {
            totals: counters.totals,
            running: counters.running(),
            waiting: counters.waiting(),
            prefix_cache_hit_tokens: models.clone().map(|m| m.prefix_hit_tokens).sum(),
            prefix_cache_query_tokens: models.map(|m| m.prefix_query_tokens).sum(),
            kv_cache_usage,
            cache_blocks_resident,
            requests_by_model: counters
                .models
                .iter()
                .map(|(name, m)| (name.clone(), m.requests))
                .collect(),
            last_request_headers: counters.last_request_headers.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let mut h = Histogram::default();
        h.observe(0.0005);
        h.observe(0.03);
        h.observe(5000.0);
        let cum = h.cumulative();
        assert_eq!(cum[0], (0.001, 1));
        assert_eq!(cum[4], (0.04, 2));
        assert_eq!(cum.last().unwrap().1, 2);
        assert_eq!(h.count, 3);
        assert!((h.sum - 5000.0305).abs() < 1e-9);
    }

    #[test]
    fn stats_sum_models() {
        let mut c = Counters::new(&["a".into(), "b".into()]);
        c.model("a").running = 2;
        c.model("b").waiting = 1;
        c.model("a").prefix_hit_tokens = 16;
        c.model("b").prefix_hit_tokens = 32;
        c.model("b").requests = 4;
        let s = SimStats::build(&c, 0.5, 3);
        assert_eq!((s.running, s.waiting), (2, 1));
        assert_eq!(s.prefix_cache_hit_tokens, 48);
        assert_eq!(s.requests_by_model["b"], 4);
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["cancelled"], 0);
        assert_eq!(json["kv_cache_usage"], 0.5);
    }
}
