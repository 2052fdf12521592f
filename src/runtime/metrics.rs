//! The reload families: the generation in force and every attempt's result.

use prometheus::{IntCounterVec, IntGauge, IntGaugeVec};

use crate::observe::clock::unix_secs;
use crate::observe::Metrics;

/// The reload families.
#[derive(Debug, Clone)]
pub struct ReloadMetrics {
    generation: IntGauge,
    reloads: IntCounterVec,
    last_reload: IntGaugeVec,
}

impl ReloadMetrics {
    pub fn register(metrics: &Metrics) -> prometheus::Result<Self> {
        Ok(Self {
            generation: metrics.single_gauge(
                "ferrogate_config_generation",
                "Generation of the configuration in force (1 at start, +1 per successful reload).",
            )?,
            reloads: metrics.counter(
                "ferrogate_config_reloads_total",
                "Configuration reload attempts by result (ok, error).",
                &["result"],
            )?,
            last_reload: metrics.gauge(
                "ferrogate_config_last_reload_timestamp_seconds",
                "When the last reload with this result happened (Unix seconds).",
                &["result"],
            )?,
        })
    }

    /// Sets the generation of the configuration in force.
    pub fn generation(&self, generation: u64) {
        self.generation
            .set(i64::try_from(generation).unwrap_or(i64::MAX));
    }

    /// Records a reload attempt's result.
    pub fn attempt(&self, ok: bool) {
        let result = if ok { "ok" } else { "error" };
        self.reloads.with_label_values(&[result]).inc();
        self.last_reload
            .with_label_values(&[result])
            .set(unix_secs());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempts_and_generation_render() {
        let metrics = Metrics::new().expect("definitions");
        let reload = ReloadMetrics::register(&metrics).expect("register");
        reload.attempt(true);
        reload.generation(3);
        let text = metrics.render();
        assert!(
            text.contains(r#"ferrogate_config_reloads_total{result="ok"} 1"#),
            "{text}"
        );
        assert!(text.contains("ferrogate_config_generation 3"), "{text}");
    }
}
