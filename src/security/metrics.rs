//! The edge checks' families: requests refused by a route's checks, and connections closed
//! before any request (PROXY protocol, listener limits, TLS handshakes, slow headers).

use std::sync::Arc;

use prometheus::IntCounterVec;

use crate::observe::metrics::{Labels, Metrics};

/// The edge checks' families.
#[derive(Clone)]
pub struct SecurityMetrics {
    labels: Arc<Labels>,
    rejections: IntCounterVec,
    refusals: IntCounterVec,
}

impl std::fmt::Debug for SecurityMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecurityMetrics").finish_non_exhaustive()
    }
}

impl SecurityMetrics {
    pub fn register(metrics: &Metrics) -> prometheus::Result<Arc<Self>> {
        Ok(Arc::new(Self {
            labels: metrics.labels().clone(),
            rejections: metrics.counter(
                "ferrogate_security_rejections_total",
                "Requests refused at the edge by a route's access lists or rate limit.",
                &["route", "reason"],
            )?,
            refusals: metrics.counter(
                "ferrogate_connection_refusals_total",
                "Connections closed before any request: PROXY protocol refused, a listener limit (max_connections, max_connections_per_ip), a failed or stalled TLS handshake.",
                &["reason"],
            )?,
        }))
    }

    /// Counts a request the edge checks of `route` refused (`reason`: `access`, `rate_limit`…).
    pub fn rejected(&self, route: &str, reason: &'static str) {
        let route = self.labels.routes.admit(route);
        self.rejections
            .with_label_values(&[route.as_str(), reason])
            .inc();
    }

    /// Counts a connection refused by a listener's PROXY protocol policy (`reason`:
    /// `untrusted_peer`, `invalid`, `timeout`).
    pub fn proxy_protocol_refused(&self, reason: &'static str) {
        self.refusals.with_label_values(&[reason]).inc();
    }

    /// Counts a connection closed by a listener limit or the handshake (`reason`: `per_ip` for
    /// `max_connections_per_ip`, `max_connections`, `tls_handshake`, `header_timeout`…).
    pub fn connection_refused(&self, reason: &'static str) {
        let label = match reason {
            "per_ip" => "connections_per_ip",
            other => other,
        };
        self.refusals.with_label_values(&[label]).inc();
    }
}
