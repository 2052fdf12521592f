//! Several instances as one edge (`cluster:`): certificates, the ACME account, HTTP-01 tokens,
//! rate-limit and quota counts kept in Redis, one instance at a time issuing each certificate
//! (a lock with expiry and fencing), and membership by heartbeat. `apply` installs the cluster of
//! a configuration (or none); everything else asks [`current`]. Without `cluster:` nothing here
//! runs and every instance keeps its state to itself.

mod error;
mod keys;
mod link;
mod members;
mod scripts;
mod shared;

use std::sync::{Arc, LazyLock};

use arc_swap::ArcSwapOption;

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
}

/// The cluster of the configuration in force: its Redis link and the runtime that drives it.
pub struct Cluster {
    inner: Arc<Inner>,
    /// Always `Some` until dropped.
    runtime: Option<tokio::runtime::Runtime>,
}

static CURRENT: LazyLock<ArcSwapOption<Cluster>> = LazyLock::new(ArcSwapOption::empty);

/// The cluster in force, if the configuration has one.
pub fn current() -> Option<Arc<Cluster>> {
    CURRENT.load_full()
}

/// Makes `config`'s cluster current: unchanged settings keep the running one; changed settings
/// start a new link (the old one stops when its last user lets go); none stops sharing.
pub fn apply(config: &Config) -> Result<(), ClusterError> {
    let running = current();
    let names: Vec<String> = config.tls.acme.iter().map(|c| c.name.clone()).collect();
    match (&config.cluster, running) {
        (None, None) => Ok(()),
        (None, Some(_)) => {
            CURRENT.store(None);
            tracing::info!("cluster section removed; this instance now keeps its state to itself");
            crate::observe::metrics::cluster_redis_up(false);
            Ok(())
        }
        (Some(settings), Some(running)) if running.inner.settings == *settings => {
            running.inner.certificates.store(Arc::new(names));
            Ok(())
        }
        (Some(settings), _) => {
            let cluster = Cluster::start(settings.clone())?;
            cluster.inner.certificates.store(Arc::new(names));
            CURRENT.store(Some(Arc::new(cluster)));
            Ok(())
        }
    }
}

impl Cluster {
    fn start(settings: Settings) -> Result<Self, ClusterError> {
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
            link: Link::new(settings.redis.clone(), settings.timeout),
            view: arc_swap::ArcSwap::from_pointee(ClusterView::default()),
            certificates: arc_swap::ArcSwap::from_pointee(Vec::new()),
            id,
            settings,
        });
        tracing::info!(instance = %inner.id, redis = %inner.link.describe(), "joining the cluster");
        runtime.spawn(members::heartbeat(inner.clone()));
        Ok(Self {
            inner,
            runtime: Some(runtime),
        })
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

impl Drop for Cluster {
    /// Stops the heartbeat and the connection; safe from inside an async context too.
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}
