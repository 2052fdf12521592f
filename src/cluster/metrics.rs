//! The cluster families: whether Redis answers, how many members sent a heartbeat, who holds
//! each certificate's issuance lock.

use std::sync::Arc;

use prometheus::{IntGauge, IntGaugeVec};

use super::ClusterView;
use crate::observe::metrics::{Labels, Metrics};

/// The cluster families.
#[derive(Clone)]
pub struct ClusterMetrics {
    labels: Arc<Labels>,
    up: IntGauge,
    members: IntGauge,
    locks: IntGaugeVec,
}

impl std::fmt::Debug for ClusterMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterMetrics").finish_non_exhaustive()
    }
}

impl ClusterMetrics {
    pub fn register(metrics: &Metrics) -> prometheus::Result<Self> {
        Ok(Self {
            labels: metrics.labels().clone(),
            up: metrics.single_gauge(
                "ferrogate_cluster_redis_up",
                "1 while the cluster's Redis answers, 0 while it is away or no cluster is configured.",
            )?,
            members: metrics.single_gauge(
                "ferrogate_cluster_members",
                "Instances that sent a heartbeat recently, as this instance last read them.",
            )?,
            locks: metrics.gauge(
                "ferrogate_cluster_lock_holder",
                "1 for the instance holding a certificate's issuance lock now (by certificate and holder).",
                &["certificate", "holder"],
            )?,
        })
    }

    /// Whether the cluster's Redis answers.
    pub fn redis_up(&self, up: bool) {
        self.up.set(i64::from(up));
    }

    /// Members and lock holders as the last heartbeat read them.
    pub fn view(&self, view: &ClusterView) {
        self.up.set(i64::from(view.redis_up));
        self.members.set(view.members.len() as i64);
        self.locks.reset();
        for lock in &view.locks {
            let certificate = self.labels.names.admit(&lock.certificate);
            self.locks
                .with_label_values(&[certificate.as_str(), lock.holder.as_str()])
                .set(1);
        }
    }
}
