//! The ACME family: issuance and renewal attempts by certificate and result.

use std::sync::Arc;

use prometheus::IntCounterVec;

use crate::observe::metrics::{Labels, Metrics};

/// The ACME family.
#[derive(Clone)]
pub struct AcmeMetrics {
    labels: Arc<Labels>,
    orders: IntCounterVec,
}

impl std::fmt::Debug for AcmeMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AcmeMetrics").finish_non_exhaustive()
    }
}

impl AcmeMetrics {
    pub fn register(metrics: &Metrics) -> prometheus::Result<Self> {
        Ok(Self {
            labels: metrics.labels().clone(),
            orders: metrics.counter(
                "ferrogate_acme_orders_total",
                "ACME issuance and renewal attempts by certificate and result (ok, error).",
                &["certificate", "result"],
            )?,
        })
    }

    /// Records an issuance or renewal attempt.
    pub fn order(&self, certificate: &str, ok: bool) {
        let name = self.labels.names.admit(certificate);
        let result = if ok { "ok" } else { "error" };
        self.orders
            .with_label_values(&[name.as_str(), result])
            .inc();
    }
}
