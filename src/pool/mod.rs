//! Long-lived upstream state that survives reloads, keyed by identity: one [`UpstreamPool`] per
//! upstream name, one [`ServerState`] per (upstream, server address). Compiling a snapshot
//! re-attaches to it through [`Registry::attach`]; the health checker, DNS discovery and the
//! proxy write to it; the snapshot only names it.

pub mod members;
pub mod queue;
pub mod select;
pub mod server;
pub mod status;

use std::collections::HashMap;
use std::sync::Arc;

pub use members::{Member, StickyKey, UpstreamPool};
pub use queue::Refusal;
pub use select::{Outcome, Pick, RequestInfo};
pub use server::{InflightGuard, RecentError, ServerState};
pub use status::{ServerStatus, UpstreamStatus};

use crate::config::model::Config;
use parking_lot::Mutex;

/// Every upstream's pool, by name.
#[derive(Debug, Default)]
pub struct Registry {
    pools: Mutex<HashMap<String, Arc<UpstreamPool>>>,
}

impl Registry {
    /// The pool for `upstream`, created on first use, with its configured servers updated (state
    /// of servers that stay is kept).
    pub fn attach(&self, upstream: &crate::config::model::Upstream) -> Arc<UpstreamPool> {
        let pool = self
            .pools
            .lock()
            .entry(upstream.name.clone())
            .or_insert_with(|| Arc::new(UpstreamPool::new(&upstream.name)))
            .clone();
        let models = upstream.inference.as_ref().and_then(|i| match &i.models {
            crate::config::model::Models::List(list) => Some(list.as_slice()),
            crate::config::model::Models::Discover => None,
        });
        pool.set_configured(&upstream.servers, upstream.discovery.is_some(), models);
        pool
    }

    /// Forgets pools of upstreams `config` no longer has (requests in flight keep theirs alive).
    pub fn retain(&self, config: &Config) {
        self.pools
            .lock()
            .retain(|name, _| config.upstreams.contains_key(name));
    }

    /// The pool of an upstream, if any.
    pub fn get(&self, name: &str) -> Option<Arc<UpstreamPool>> {
        self.pools.lock().get(name).cloned()
    }
}
