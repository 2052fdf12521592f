//! Several instances as one edge (`cluster:`): certificates, the ACME account, HTTP-01 tokens,
//! rate-limit and quota counts kept in Redis, one instance at a time issuing each certificate
//! (a lock with expiry and fencing), and membership by heartbeat. A reload prepares a
//! [`ClusterPlan`] (keep the running cluster, join a new one, or none) and commits it; the
//! cluster in force travels in the runtime snapshot to the request path and is handed to the
//! ACME manager. Without `cluster:` nothing here runs and every instance keeps its state to
//! itself.

mod error;
mod keys;
mod link;
mod members;
pub mod metrics;
mod scripts;
mod shared;

use std::sync::Arc;

pub use error::ClusterError;
pub use members::{ClusterView, LockHolder, Member};
pub use shared::{IssueLock, SharedCert, Stored};

use crate::config::model::{Cluster as Settings, Config};
use keys::Keys;
use link::Link;

/// What the background work and the request path share.
pub struct Inner {
    settings: Settings,
    /// This process's id among the members: `name/pid-random`.
    id: String,
    keys: Keys,
    link: Link,
    view: arc_swap::ArcSwap<ClusterView>,
    /// Names of the configured ACME certificates (whose lock holders the status shows).
    certificates: arc_swap::ArcSwap<Vec<String>>,
    metrics: metrics::ClusterMetrics,
}

/// The cluster of the configuration in force: its Redis link and the runtime that drives it.
pub struct Cluster {
    inner: Arc<Inner>,
    /// Always `Some` until dropped.
    runtime: Option<tokio::runtime::Runtime>,
}

/// What a configuration asks of the cluster, prepared without touching the running one.
pub enum ClusterPlan {
    /// No `cluster:` section.
    Alone,
    /// The same settings as the running cluster: keep it.
    Keep(Arc<Cluster>),
    /// New or changed settings: a cluster that has not joined yet.
    Join(Arc<Cluster>),
}

impl ClusterPlan {
    /// The plan for `config` next to the `running` cluster: unchanged settings keep it, changed
    /// or new settings prepare a new one (its runtime built, nothing sent to Redis yet).
    pub fn prepare(
        config: &Config,
        running: Option<&Arc<Cluster>>,
        metrics: &metrics::ClusterMetrics,
    ) -> Result<Self, ClusterError> {
        match (&config.cluster, running) {
            (None, _) => Ok(Self::Alone),
            (Some(settings), Some(running)) if running.inner.settings == *settings => {
                Ok(Self::Keep(running.clone()))
            }
            (Some(settings), _) => Ok(Self::Join(Arc::new(Cluster::prepare(
                settings.clone(),
                metrics.clone(),
            )?))),
        }
    }

    /// The cluster the configuration runs with.
    pub fn cluster(&self) -> Option<&Arc<Cluster>> {
        match self {
            Self::Alone => None,
            Self::Keep(cluster) | Self::Join(cluster) => Some(cluster),
        }
    }

    /// Puts the plan in force: a new cluster joins (its heartbeat starts), a kept one learns the
    /// configuration's certificate names, leaving a cluster is logged (the old link stops when
    /// its last user lets go). Cannot fail.
    pub fn commit(&self, config: &Config, running: Option<&Arc<Cluster>>) {
        let names: Vec<String> = config.tls.acme.iter().map(|c| c.name.clone()).collect();
        match self {
            Self::Alone => {
                if let Some(running) = running {
                    tracing::info!(
                        "cluster section removed; this instance now keeps its state to itself"
                    );
                    running.inner.metrics.redis_up(false);
                }
            }
            Self::Keep(cluster) => cluster.inner.certificates.store(Arc::new(names)),
            Self::Join(cluster) => {
                cluster.inner.certificates.store(Arc::new(names));
                cluster.join();
            }
        }
    }
}

impl Cluster {
    /// A cluster for `settings` with its runtime, not yet joined ([`Self::join`]).
    fn prepare(settings: Settings, metrics: metrics::ClusterMetrics) -> Result<Self, ClusterError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("ferrogate-cluster")
            .enable_all()
            .build()
            .map_err(ClusterError::Runtime)?;
        let id = format!(
            "{}/{}-{:06x}",
            settings.name,
            std::process::id(),
            fastrand::u32(..0x100_0000)
        );
        let inner = Arc::new(Inner {
            keys: Keys::new(&settings.redis.key_prefix),
            link: Link::new(settings.redis.clone(), settings.timeout, metrics.clone()),
            view: arc_swap::ArcSwap::from_pointee(ClusterView::default()),
            certificates: arc_swap::ArcSwap::from_pointee(Vec::new()),
            metrics,
            id,
            settings,
        });
        Ok(Self {
            inner,
            runtime: Some(runtime),
        })
    }

    /// Joins: starts the heartbeat that keeps this instance a member.
    fn join(&self) {
        tracing::info!(instance = %self.inner.id, redis = %self.inner.link.describe(), "joining the cluster");
        if let Some(runtime) = &self.runtime {
            runtime.spawn(members::heartbeat(self.inner.clone()));
        }
    }

    /// This instance's member id.
    pub fn id(&self) -> &str {
        &self.inner.id
    }

    pub fn settings(&self) -> &Settings {
        &self.inner.settings
    }

    /// Whether Redis answered the last command.
    pub fn is_up(&self) -> bool {
        self.inner.link.is_up()
    }

    /// Members, lock holders and the link as last seen (for the status page).
    pub fn view(&self) -> Arc<ClusterView> {
        self.inner.view.load_full()
    }

    /// Runs `work` on the cluster's runtime, detached (counting that must not hold up a response).
    pub fn spawn(&self, work: impl std::future::Future<Output = ()> + Send + 'static) {
        if let Some(runtime) = &self.runtime {
            runtime.spawn(work);
        }
    }
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("id", &self.inner.id)
            .finish_non_exhaustive()
    }
}

impl Drop for Cluster {
    /// Stops the heartbeat and the connection; safe from inside an async context too.
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}
