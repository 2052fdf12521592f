//! The inference families: routing decisions and the prefix tokens they predicted cached, time
//! to first token and between chunks, requests answered at the edge, and what each inference
//! server last reported about itself (queue, running, KV-cache use, prefix-cache counters, and
//! the age of that reading, derived at scrape time).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;
use prometheus::{GaugeVec, Histogram, HistogramVec, IntCounterVec};

use super::signals::Load;
use crate::observe::metrics::{counter_growth, Labels, Metrics, Refresh};

/// Every state label of `ferrogate_inference_kv_events_state`.
const KV_STATES: &[&str] = &[
    "exact",
    "replaying",
    "connecting",
    "fallback_gap",
    "fallback_silent",
    "fallback_broken",
    "fallback_overflow",
];

/// The inference families.
pub struct InferenceMetrics {
    labels: Arc<Labels>,
    decisions: IntCounterVec,
    ttft: HistogramVec,
    inter_chunk: HistogramVec,
    predicted_prefix: IntCounterVec,
    rejections: IntCounterVec,
    waiting: GaugeVec,
    running: GaugeVec,
    kv_usage: GaugeVec,
    signal_age: GaugeVec,
    scrape_failures: IntCounterVec,
    observed_prefix_hits: IntCounterVec,
    observed_prefix_queries: IntCounterVec,
    index_tokens: GaugeVec,
    cache_model_tokens: GaugeVec,
    prefill_rate: GaugeVec,
    index_corrections: IntCounterVec,
    prefix_spread: GaugeVec,
    kv_state: GaugeVec,
    kv_blocks: GaugeVec,
    kv_batches: IntCounterVec,
    kv_tokenized: IntCounterVec,
    /// (upstream, server) → when its metrics were last read, for the age gauge.
    readings: Mutex<BTreeMap<(String, String), Instant>>,
}

impl std::fmt::Debug for InferenceMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InferenceMetrics").finish_non_exhaustive()
    }
}

/// Per-request inference metric children, resolved once per request.
pub struct InferenceHandles {
    pub ttft: Histogram,
    pub inter_chunk: Histogram,
}

impl InferenceMetrics {
    pub fn register(metrics: &Metrics) -> prometheus::Result<Arc<Self>> {
        let m = metrics;
        let inference = Arc::new(Self {
            labels: m.labels().clone(),
            decisions: m.counter("ferrogate_inference_decisions_total",
                "Inference requests routed, by upstream, policy and reason (affinity, affinity_overflow, prefix_hit, replicate, least_cost, least_load).",
                &["upstream", "policy", "reason"])?,
            ttft: m.histogram("ferrogate_inference_ttft_seconds",
                "Time from sending an inference request to a server to its first response body bytes (time to first token), by upstream, server and model.",
                &["upstream", "server", "model"])?,
            inter_chunk: m.histogram("ferrogate_inference_inter_token_seconds",
                "Gaps between streamed response chunks (inter-token latency), by upstream, server and model.",
                &["upstream", "server", "model"])?,
            predicted_prefix: m.counter("ferrogate_inference_predicted_prefix_tokens_total",
                "Prompt tokens the cache_aware index predicted the chosen server holds (blocks × about 64 tokens), to compare with what the servers report (ferrogate_inference_observed_prefix_hit_tokens_total).",
                &["upstream", "server"])?,
            rejections: m.counter("ferrogate_inference_rejections_total",
                "Inference requests answered at the edge, by upstream and reason (bad_request, missing_model, model_not_found, too_large).",
                &["upstream", "reason"])?,
            waiting: m.float_gauge("ferrogate_inference_requests_waiting",
                "Requests waiting in an inference server's queue, as its /metrics last said.",
                &["upstream", "server"])?,
            running: m.float_gauge("ferrogate_inference_requests_running",
                "Requests an inference server was generating, as its /metrics last said.",
                &["upstream", "server"])?,
            kv_usage: m.float_gauge("ferrogate_inference_kv_cache_usage_ratio",
                "KV-cache use (0..1) an inference server last reported.",
                &["upstream", "server"])?,
            signal_age: m.float_gauge("ferrogate_inference_signal_age_seconds",
                "Seconds since an inference server's /metrics was last read successfully.",
                &["upstream", "server"])?,
            scrape_failures: m.counter("ferrogate_inference_scrape_failures_total",
                "Failed reads of an inference server's /v1/models (kind models) or /metrics (kind metrics).",
                &["upstream", "server", "kind"])?,
            observed_prefix_hits: m.counter("ferrogate_inference_observed_prefix_hit_tokens_total",
                "Prefix-cache hit tokens inference servers reported (growth between readings).",
                &["upstream", "server"])?,
            observed_prefix_queries: m.counter("ferrogate_inference_observed_prefix_query_tokens_total",
                "Prefix-cache query tokens inference servers reported (growth between readings).",
                &["upstream", "server"])?,
            index_tokens: m.float_gauge("ferrogate_inference_index_tokens",
                "Prompt tokens cache_aware's index believes an inference server holds in its prefix cache.",
                &["upstream", "server"])?,
            cache_model_tokens: m.float_gauge("ferrogate_inference_cache_model_tokens",
                "An inference server's prefix cache as cache_aware models it (its engine's reported size, shrunk while it hits less than predicted).",
                &["upstream", "server"])?,
            prefill_rate: m.float_gauge("ferrogate_inference_prefill_tokens_per_second",
                "Prompt tokens per second an inference server was seen to prefill (learned from times to first token).",
                &["upstream", "server"])?,
            index_corrections: m.counter("ferrogate_inference_index_corrections_total",
                "Corrections of cache_aware's modelled cache from a server's own prefix-cache counters, by direction (shrink, grow, clear).",
                &["upstream", "server", "direction"])?,
            prefix_spread: m.float_gauge("ferrogate_inference_prefix_spread",
                "Servers carrying each prompt prefix (tenant) active in the last 10 s: the mean and the max over prefixes, and how many prefixes are active (stat mean, max, prefixes).",
                &["upstream", "stat"])?,
            kv_state: m.float_gauge("ferrogate_inference_kv_events_state",
                "1 for the state of a server's KV-cache event stream (exact, replaying, connecting, fallback_gap, fallback_silent, fallback_broken, fallback_overflow), 0 for the others; any but exact routes the server by the approximate index.",
                &["upstream", "server", "state"])?,
            kv_blocks: m.float_gauge("ferrogate_inference_kv_events_blocks",
                "Blocks a server holds according to its KV-cache events (0 while its stream is not exact).",
                &["upstream", "server"])?,
            kv_batches: m.counter("ferrogate_inference_kv_events_batches_total",
                "KV-cache event batches received from a server, by kind (live, replayed: a replay answered, undecodable).",
                &["upstream", "server", "kind"])?,
            kv_tokenized: m.counter("ferrogate_inference_kv_tokenize_total",
                "Prompt first messages tokenized by an engine for exact routing, by result (ok, failed).",
                &["upstream", "result"])?,
            readings: Mutex::new(BTreeMap::new()),
        });
        m.on_render(inference.clone());
        Ok(inference)
    }

    /// Publishes an inference server's metrics reading; `previous` is the reading before it,
    /// whose prefix-cache counters the new ones are compared with (a drop, e.g. a restart, adds
    /// nothing).
    pub fn reading(&self, upstream: &str, server: &str, load: &Load, previous: Option<&Load>) {
        let labels = [
            self.labels.upstreams.admit(upstream),
            self.labels.servers.admit(server),
        ];
        self.waiting.with_label_values(&labels).set(load.waiting);
        self.running.with_label_values(&labels).set(load.running);
        match load.kv_usage {
            Some(kv) => self.kv_usage.with_label_values(&labels).set(kv),
            None => drop(self.kv_usage.remove_label_values(&labels)),
        }
        let grown = |now: Option<f64>, before: Option<f64>| counter_growth(before?, now?);
        let previous = previous.copied();
        if let Some(delta) = grown(
            load.prefix_hit_tokens,
            previous.and_then(|p| p.prefix_hit_tokens),
        ) {
            self.observed_prefix_hits
                .with_label_values(&labels)
                .inc_by(delta);
        }
        if let Some(delta) = grown(
            load.prefix_query_tokens,
            previous.and_then(|p| p.prefix_query_tokens),
        ) {
            self.observed_prefix_queries
                .with_label_values(&labels)
                .inc_by(delta);
        }
        self.signal_age.with_label_values(&labels).set(0.0);
        let [upstream, server] = labels;
        self.readings
            .lock()
            .insert((upstream, server), Instant::now());
    }

    /// Publishes what cache_aware models for a server.
    pub fn server_model(
        &self,
        upstream: &str,
        server: &str,
        index_tokens: f64,
        cache_tokens: f64,
        prefill_rate: Option<f64>,
    ) {
        let labels = [
            self.labels.upstreams.admit(upstream),
            self.labels.servers.admit(server),
        ];
        self.index_tokens
            .with_label_values(&labels)
            .set(index_tokens);
        self.cache_model_tokens
            .with_label_values(&labels)
            .set(cache_tokens);
        match prefill_rate {
            Some(rate) => self.prefill_rate.with_label_values(&labels).set(rate),
            None => drop(self.prefill_rate.remove_label_values(&labels)),
        }
    }

    /// Counts a correction of a server's modelled cache (`shrink`, `grow`, `clear`).
    pub fn index_corrected(&self, upstream: &str, server: &str, direction: &'static str) {
        let upstream = self.labels.upstreams.admit(upstream);
        let server = self.labels.servers.admit(server);
        if let Ok(c) = self.index_corrections.get_metric_with_label_values(&[
            upstream.as_str(),
            server.as_str(),
            direction,
        ]) {
            c.inc();
        }
    }

    /// Publishes how spread an upstream's active prefixes are.
    pub fn spread(&self, upstream: &str, mean: f64, max: f64, prefixes: f64) {
        let upstream = self.labels.upstreams.admit(upstream);
        for (stat, value) in [("mean", mean), ("max", max), ("prefixes", prefixes)] {
            self.prefix_spread
                .with_label_values(&[upstream.as_str(), stat])
                .set(value);
        }
    }

    /// Publishes the state of a server's KV-cache event stream and the blocks it holds.
    pub fn kv_events_state(&self, upstream: &str, server: &str, state: &str, blocks: usize) {
        let upstream = self.labels.upstreams.admit(upstream);
        let server = self.labels.servers.admit(server);
        for known in KV_STATES {
            self.kv_state
                .with_label_values(&[upstream.as_str(), server.as_str(), known])
                .set(if *known == state { 1.0 } else { 0.0 });
        }
        self.kv_blocks
            .with_label_values(&[upstream.as_str(), server.as_str()])
            .set(blocks as f64);
    }

    /// Removes a server no longer followed from the state gauge.
    pub fn kv_events_forget(&self, upstream: &str, server: &str) {
        let upstream = self.labels.upstreams.admit(upstream);
        let server = self.labels.servers.admit(server);
        for known in KV_STATES {
            let _ = self
                .kv_state
                .remove_label_values(&[upstream.as_str(), server.as_str(), known]);
        }
        let _ = self
            .kv_blocks
            .remove_label_values(&[upstream.as_str(), server.as_str()]);
    }

    /// Counts a KV-cache event batch (`live`, `replayed`, `undecodable`).
    pub fn kv_events_batch(&self, upstream: &str, server: &str, kind: &'static str) {
        let upstream = self.labels.upstreams.admit(upstream);
        let server = self.labels.servers.admit(server);
        if let Ok(c) = self.kv_batches.get_metric_with_label_values(&[
            upstream.as_str(),
            server.as_str(),
            kind,
        ]) {
            c.inc();
        }
    }

    /// Counts a tokenization of a prompt's first message (`ok`, `failed`).
    pub fn kv_tokenized(&self, upstream: &str, result: &'static str) {
        let upstream = self.labels.upstreams.admit(upstream);
        if let Ok(c) = self
            .kv_tokenized
            .get_metric_with_label_values(&[upstream.as_str(), result])
        {
            c.inc();
        }
    }

    /// Counts a failed scrape of an inference server (`kind`: `models`, `metrics`).
    pub fn scrape_failed(&self, upstream: &str, server: &str, kind: &'static str) {
        let labels = [
            self.labels.upstreams.admit(upstream),
            self.labels.servers.admit(server),
        ];
        self.scrape_failures
            .with_label_values(&[labels[0].as_str(), labels[1].as_str(), kind])
            .inc();
    }

    /// Declares the servers `upstream` scrapes now: the readings (gauges) of any other server of
    /// it are removed, so a server gone from the pool does not stay on the dashboards.
    pub fn servers(&self, upstream: &str, servers: &[&str]) {
        let upstream = self.labels.upstreams.admit(upstream);
        let keep: Vec<String> = servers
            .iter()
            .map(|s| self.labels.servers.admit(s))
            .collect();
        self.readings.lock().retain(|(u, s), _| {
            if *u != upstream || keep.contains(s) {
                return true;
            }
            let labels = [u.as_str(), s.as_str()];
            for family in [
                &self.waiting,
                &self.running,
                &self.kv_usage,
                &self.signal_age,
                &self.index_tokens,
                &self.cache_model_tokens,
                &self.prefill_rate,
            ] {
                let _ = family.remove_label_values(&labels);
            }
            false
        });
    }

    /// Counts one routing decision and the prefix tokens it predicted cached.
    pub fn decision(&self, upstream: &str, server: &str, policy: &str, reason: &str, tokens: u64) {
        let upstream = self.labels.upstreams.admit(upstream);
        if let Ok(c) =
            self.decisions
                .get_metric_with_label_values(&[upstream.as_str(), policy, reason])
        {
            c.inc();
        }
        if tokens > 0 {
            let server = self.labels.servers.admit(server);
            if let Ok(c) = self
                .predicted_prefix
                .get_metric_with_label_values(&[upstream.as_str(), server.as_str()])
            {
                c.inc_by(tokens);
            }
        }
    }

    /// Counts an inference request answered at the edge.
    pub fn rejected(&self, upstream: &str, reason: &'static str) {
        let upstream = self.labels.upstreams.admit(upstream);
        if let Ok(c) = self
            .rejections
            .get_metric_with_label_values(&[upstream.as_str(), reason])
        {
            c.inc();
        }
    }

    /// The TTFT and inter-token histograms of one (upstream, server, model).
    pub fn handles(&self, upstream: &str, server: &str, model: &str) -> Option<InferenceHandles> {
        let upstream = self.labels.upstreams.admit(upstream);
        let server = self.labels.servers.admit(server);
        let model = self.labels.models.admit(model);
        let labels = [upstream.as_str(), server.as_str(), model.as_str()];
        Some(InferenceHandles {
            ttft: self.ttft.get_metric_with_label_values(&labels).ok()?,
            inter_chunk: self
                .inter_chunk
                .get_metric_with_label_values(&labels)
                .ok()?,
        })
    }
}

impl Refresh for InferenceMetrics {
    fn refresh(&self) {
        for ((upstream, server), at) in self.readings.lock().iter() {
            self.signal_age
                .with_label_values(&[upstream.as_str(), server.as_str()])
                .set(at.elapsed().as_secs_f64());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readings_and_prefix_growth() {
        let metrics = Metrics::new().expect("definitions");
        let inference = InferenceMetrics::register(&metrics).expect("register");
        let load = |hits, queries| Load {
            waiting: 3.0,
            running: 2.0,
            kv_usage: Some(0.25),
            prefix_hit_tokens: Some(hits),
            prefix_query_tokens: Some(queries),
            cache_tokens: None,
        };
        let (u, s) = ("unit-gpu", "10.9.9.8:8000");
        inference.reading(u, s, &load(100.0, 400.0), None);
        inference.reading(u, s, &load(150.0, 500.0), Some(&load(100.0, 400.0)));
        // A restart: counters start again from zero, nothing is added.
        inference.reading(u, s, &load(10.0, 20.0), Some(&load(150.0, 500.0)));
        inference.scrape_failed(u, s, "models");
        let text = metrics.render();
        for needle in [
            r#"ferrogate_inference_requests_waiting{server="10.9.9.8:8000",upstream="unit-gpu"} 3"#,
            r#"ferrogate_inference_requests_running{server="10.9.9.8:8000",upstream="unit-gpu"} 2"#,
            r#"ferrogate_inference_kv_cache_usage_ratio{server="10.9.9.8:8000",upstream="unit-gpu"} 0.25"#,
            r#"ferrogate_inference_signal_age_seconds{server="10.9.9.8:8000",upstream="unit-gpu"} 0"#,
            r#"ferrogate_inference_observed_prefix_hit_tokens_total{server="10.9.9.8:8000",upstream="unit-gpu"} 50"#,
            r#"ferrogate_inference_observed_prefix_query_tokens_total{server="10.9.9.8:8000",upstream="unit-gpu"} 100"#,
            r#"ferrogate_inference_scrape_failures_total{kind="models",server="10.9.9.8:8000",upstream="unit-gpu"} 1"#,
        ] {
            assert!(text.contains(needle), "missing {needle} in\n{text}");
        }
        inference.servers(u, &[]);
        assert!(!metrics
            .render()
            .contains("ferrogate_inference_requests_waiting{server=\"10.9.9.8:8000\""));
    }
}
