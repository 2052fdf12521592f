//! The pool families: the admission queue's depth and refusals, and the balancer's verdict on
//! each server (copied from the pools at scrape time).

use std::sync::{Arc, Weak};

use prometheus::{IntCounterVec, IntGaugeVec};

use super::Registry;
use crate::observe::metrics::{Labels, Metrics, Refresh};

/// The pool families.
pub struct PoolMetrics {
    labels: Arc<Labels>,
    queue_depth: IntGaugeVec,
    queue_rejections: IntCounterVec,
    server_usable: IntGaugeVec,
}

impl std::fmt::Debug for PoolMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoolMetrics").finish_non_exhaustive()
    }
}

impl PoolMetrics {
    pub fn register(metrics: &Metrics) -> prometheus::Result<Arc<Self>> {
        Ok(Arc::new(Self {
            labels: metrics.labels().clone(),
            queue_depth: metrics.gauge(
                "ferrogate_queue_depth",
                "Requests waiting for a server of an upstream.",
                &["upstream"],
            )?,
            queue_rejections: metrics.counter(
                "ferrogate_queue_rejections_total",
                "Requests refused because an upstream's queue was full.",
                &["upstream"],
            )?,
            server_usable: metrics.gauge(
                "ferrogate_upstream_server_healthy",
                "1 while the balancer may send new requests to the server (up, slow-starting or draining with its sticky clients), 0 when it took the server out (failed active checks, passive ejection).",
                &["upstream", "server"],
            )?,
        }))
    }

    /// Copies the verdicts of `registry`'s pools into the families at every scrape.
    pub fn refresh_from(self: &Arc<Self>, metrics: &Metrics, registry: &Arc<Registry>) {
        metrics.on_render(Arc::new(Verdicts {
            metrics: self.clone(),
            registry: Arc::downgrade(registry),
        }));
    }

    /// Sets how many requests wait for a server of `upstream`.
    pub fn queue_depth(&self, upstream: &str, depth: i64) {
        let upstream = self.labels.upstreams.admit(upstream);
        self.queue_depth
            .with_label_values(&[upstream.as_str()])
            .set(depth);
    }

    /// Counts a request refused because `upstream`'s queue was full.
    pub fn queue_rejected(&self, upstream: &str) {
        let upstream = self.labels.upstreams.admit(upstream);
        self.queue_rejections
            .with_label_values(&[upstream.as_str()])
            .inc();
    }

    /// The balancer's verdict on a server.
    pub fn server_healthy(&self, upstream: &str, server: &str, healthy: bool) {
        let upstream = self.labels.upstreams.admit(upstream);
        let server = self.labels.servers.admit(server);
        self.server_usable
            .with_label_values(&[upstream.as_str(), server.as_str()])
            .set(i64::from(healthy));
    }
}

/// The balancer's verdicts, read from the pools when /metrics is scraped.
struct Verdicts {
    metrics: Arc<PoolMetrics>,
    registry: Weak<Registry>,
}

impl Refresh for Verdicts {
    fn refresh(&self) {
        let Some(registry) = self.registry.upgrade() else {
            return;
        };
        for pool in registry.pools() {
            for server in pool.status("", None).servers {
                let healthy = !matches!(server.state, "down" | "ejected");
                self.metrics
                    .server_healthy(&pool.name, &server.address, healthy);
            }
        }
    }
}
