//! The process's Prometheus registry ([`Metrics`]): one registry of our own (not the prometheus
//! crate's default one), the label budgets every family shares, and rendering. It defines only
//! the process-level families (build info, start time); each domain defines and registers its
//! own families through [`Metrics::counter`] and friends, and hands its handles to the
//! long-lived objects that count (linkerd's `Metrics::register` shape). Families whose values
//! are derived at scrape time register a [`Refresh`].

use std::sync::Arc;

use parking_lot::Mutex;
use prometheus::proto::MetricFamily;
use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

use super::clock::unix_secs;
use super::labels::{LabelBudget, DEFAULT_LABEL_BUDGET};

/// Latency buckets (seconds): sub-millisecond proxying up to multi-minute token streams.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    120.0, 300.0,
];

/// Brings derived values (ages, seconds left, states copied from elsewhere) up to date just
/// before the metrics are rendered.
pub trait Refresh: Send + Sync {
    fn refresh(&self);
}

/// The budgets of distinct label values, shared by every family that uses the label.
#[derive(Debug)]
pub struct Labels {
    pub routes: LabelBudget,
    pub upstreams: LabelBudget,
    pub servers: LabelBudget,
    /// Listener, certificate and other configured names.
    pub names: LabelBudget,
    pub models: LabelBudget,
}

impl Default for Labels {
    fn default() -> Self {
        Self {
            routes: LabelBudget::new(DEFAULT_LABEL_BUDGET),
            upstreams: LabelBudget::new(DEFAULT_LABEL_BUDGET),
            servers: LabelBudget::new(DEFAULT_LABEL_BUDGET),
            names: LabelBudget::new(DEFAULT_LABEL_BUDGET),
            models: LabelBudget::new(DEFAULT_LABEL_BUDGET),
        }
    }
}

/// The registry every family of the process is registered in.
pub struct Metrics {
    registry: Registry,
    labels: Arc<Labels>,
    refreshers: Mutex<Vec<Arc<dyn Refresh>>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// A registry with the process-level families (`ferrogate_build_info`,
    /// `ferrogate_start_time_seconds`).
    pub fn new() -> prometheus::Result<Self> {
        let metrics = Self {
            registry: Registry::new(),
            labels: Arc::new(Labels::default()),
            refreshers: Mutex::new(Vec::new()),
        };
        let build_info = metrics.gauge(
            "ferrogate_build_info",
            "Always 1; the version as a label.",
            &["version"],
        )?;
        build_info
            .get_metric_with_label_values(&[env!("CARGO_PKG_VERSION")])?
            .set(1);
        metrics
            .single_gauge(
                "ferrogate_start_time_seconds",
                "When the process started (Unix seconds).",
            )?
            .set(unix_secs());
        Ok(metrics)
    }

    /// The label budgets.
    pub fn labels(&self) -> &Arc<Labels> {
        &self.labels
    }

    pub fn counter(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
    ) -> prometheus::Result<IntCounterVec> {
        let metric = IntCounterVec::new(Opts::new(name, help), labels)?;
        self.registry.register(Box::new(metric.clone()))?;
        Ok(metric)
    }

    pub fn gauge(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
    ) -> prometheus::Result<IntGaugeVec> {
        let metric = IntGaugeVec::new(Opts::new(name, help), labels)?;
        self.registry.register(Box::new(metric.clone()))?;
        Ok(metric)
    }

    /// A gauge without labels.
    pub fn single_gauge(&self, name: &str, help: &str) -> prometheus::Result<IntGauge> {
        let metric = IntGauge::new(name, help)?;
        self.registry.register(Box::new(metric.clone()))?;
        Ok(metric)
    }

    pub fn float_gauge(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
    ) -> prometheus::Result<GaugeVec> {
        let metric = GaugeVec::new(Opts::new(name, help), labels)?;
        self.registry.register(Box::new(metric.clone()))?;
        Ok(metric)
    }

    /// A histogram with [`LATENCY_BUCKETS`].
    pub fn histogram(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
    ) -> prometheus::Result<HistogramVec> {
        let opts = HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec());
        let metric = HistogramVec::new(opts, labels)?;
        self.registry.register(Box::new(metric.clone()))?;
        Ok(metric)
    }

    /// Runs `refresher` before every rendering.
    pub fn on_render(&self, refresher: Arc<dyn Refresh>) {
        self.refreshers.lock().push(refresher);
    }

    /// Every family's current values, as they are (no refresher runs): for readers inside the
    /// process, such as the history sampler.
    pub fn gather(&self) -> Vec<MetricFamily> {
        self.registry.gather()
    }

    /// The Prometheus text exposition of every family, derived values brought up to date.
    pub fn render(&self) -> String {
        let refreshers: Vec<Arc<dyn Refresh>> = self.refreshers.lock().clone();
        for refresher in refreshers {
            refresher.refresh();
        }
        let mut out = Vec::new();
        if let Err(error) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::warn!(%error, "could not encode the metrics");
        }
        String::from_utf8(out).unwrap_or_default()
    }
}

/// How much a cumulative counter grew between two readings; `None` when it went down (the
/// source restarted and counts from zero again) or a value is not a count.
pub fn counter_growth(before: f64, now: f64) -> Option<u64> {
    let delta = now - before;
    (delta.is_finite() && delta >= 0.0 && delta < u64::MAX as f64).then(|| delta.round() as u64)
}

/// Sums every child of a gauge family.
pub fn sum_gauges(family: &IntGaugeVec) -> i64 {
    prometheus::core::Collector::collect(family)
        .iter()
        .flat_map(|f| f.get_metric())
        .map(|metric| metric.get_gauge().get_value() as i64)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Bump(IntGauge);

    impl Refresh for Bump {
        fn refresh(&self) {
            self.0.inc();
        }
    }

    #[test]
    fn process_families_render_and_refreshers_run_first() {
        let metrics = Metrics::new().expect("definitions");
        let gauge = metrics
            .single_gauge("ferrogate_unit_refreshed", "test")
            .expect("register");
        metrics.on_render(Arc::new(Bump(gauge)));
        let text = metrics.render();
        assert!(text.contains("ferrogate_build_info{version="), "{text}");
        assert!(text.contains("ferrogate_start_time_seconds"), "{text}");
        assert!(text.contains("ferrogate_unit_refreshed 1"), "{text}");
        assert!(metrics.render().contains("ferrogate_unit_refreshed 2"));
    }

    #[test]
    fn a_family_registered_twice_is_an_error() {
        let metrics = Metrics::new().expect("definitions");
        assert!(metrics.counter("ferrogate_unit_twice", "x", &[]).is_ok());
        assert!(metrics.counter("ferrogate_unit_twice", "x", &[]).is_err());
    }

    #[test]
    fn counter_growth_ignores_restarts_and_non_counts() {
        assert_eq!(counter_growth(5.0, 4.0), None);
        assert_eq!(counter_growth(5.0, f64::NAN), None);
        assert_eq!(counter_growth(5.0, 7.4), Some(2));
    }
}
