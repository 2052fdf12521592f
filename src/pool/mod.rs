//! Long-lived upstream state that survives reloads, keyed by identity: one [`UpstreamPool`] per
//! upstream name, one [`ServerState`] per (upstream, server address). Compiling a snapshot
//! re-attaches to it through [`Registry::attach`]; the health checker, DNS discovery and the
//! proxy write to it; the snapshot only names it.

pub mod admin;
pub mod health;
pub mod members;
pub mod metrics;
pub mod prefix;
pub mod queue;
pub mod select;
pub mod server;
pub mod status;

use std::collections::HashMap;
use std::sync::Arc;

pub use admin::{AdminChange, AdminError, AdminState, MAX_RUNTIME_WEIGHT};
pub use members::{Member, StickyKey, UpstreamPool};
pub use queue::Refusal;
pub use select::{Outcome, Pick, RequestInfo};
pub use server::{InflightGuard, RecentError, ServerState};
pub use status::{PrefixStatus, ServerStatus, UpstreamStatus};

use crate::config::model::{Models, Upstream};
use crate::inference::metrics::InferenceMetrics;
use metrics::PoolMetrics;
use parking_lot::Mutex;

/// Every upstream's pool, by name. A reload looks pools up while it prepares ([`Self::get`]),
/// keeps the new configuration's pools when it commits ([`Self::adopt`]) and forgets the others
/// when it retires ([`Self::retain`]).
#[derive(Debug)]
pub struct Registry {
    pools: Mutex<HashMap<String, Arc<UpstreamPool>>>,
    metrics: Option<Arc<PoolMetrics>>,
    inference: Option<Arc<InferenceMetrics>>,
}

impl Default for Registry {
    /// A registry counting nowhere (tests, benches).
    fn default() -> Self {
        Self {
            pools: Mutex::new(HashMap::new()),
            metrics: None,
            inference: None,
        }
    }
}

impl Registry {
    /// A registry whose pools count their queues in `metrics` and hand `inference` to the
    /// request path.
    pub fn new(metrics: Arc<PoolMetrics>, inference: Arc<InferenceMetrics>) -> Self {
        Self {
            pools: Mutex::new(HashMap::new()),
            metrics: Some(metrics),
            inference: Some(inference),
        }
    }

    /// The inference families, when the registry counts.
    pub fn inference_metrics(&self) -> Option<&Arc<InferenceMetrics>> {
        self.inference.as_ref()
    }

    /// The pool of an upstream, if any.
    pub fn get(&self, name: &str) -> Option<Arc<UpstreamPool>> {
        self.pools.lock().get(name).cloned()
    }

    /// The kept pool of `name`, or a new one that is not kept until [`Self::adopt`].
    pub fn get_or_new(&self, name: &str) -> Arc<UpstreamPool> {
        self.get(name).unwrap_or_else(|| {
            Arc::new(match &self.metrics {
                Some(metrics) => UpstreamPool::with_metrics(name, metrics.clone()),
                None => UpstreamPool::new(name),
            })
        })
    }

    /// Keeps `pool` for `upstream` and sets its configured servers (state of servers that
    /// stay is kept).
    pub fn adopt(&self, pool: &Arc<UpstreamPool>, upstream: &Upstream) {
        self.pools
            .lock()
            .insert(upstream.name.clone(), pool.clone());
        pool.set_configured(
            &upstream.servers,
            upstream.discovery.is_some(),
            configured_models(upstream),
        );
    }

    /// Forgets pools of upstreams for which `keep` is false (requests in flight keep theirs).
    pub fn retain(&self, mut keep: impl FnMut(&str) -> bool) {
        self.pools.lock().retain(|name, _| keep(name));
    }

    /// Every kept pool.
    pub fn pools(&self) -> Vec<Arc<UpstreamPool>> {
        self.pools.lock().values().cloned().collect()
    }

    /// The pool for `upstream`, kept and configured at once (start-up wiring and tests).
    pub fn attach(&self, upstream: &Upstream) -> Arc<UpstreamPool> {
        let pool = self.get_or_new(&upstream.name);
        self.adopt(&pool, upstream);
        pool
    }
}

/// The `inference.models` list of an upstream, when it lists them.
pub fn configured_models(upstream: &Upstream) -> Option<&[String]> {
    upstream.inference.as_ref().and_then(|i| match &i.models {
        Models::List(list) => Some(list.as_slice()),
        Models::Discover => None,
    })
}

/// The member addresses `upstream` would have in `pool` (see [`UpstreamPool::addresses_for`]).
pub fn planned_addresses(pool: &UpstreamPool, upstream: &Upstream) -> Vec<Arc<str>> {
    pool.addresses_for(&upstream.servers, upstream.discovery.is_some())
}
