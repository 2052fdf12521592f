//! An upstream's long-lived pool: the current member list (configured servers plus those DNS
//! discovery found), each member's [`ServerState`] reused by address when the list is rebuilt,
//! the sticky table, the smooth round robin lock and the admission queue's wake-up signal.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use parking_lot::Mutex;
use tokio::sync::Notify;

use super::metrics::PoolMetrics;
use super::server::ServerState;
use crate::balance::hashing::stable_hash;
use crate::balance::table::{StickyTable, DEFAULT_STICKY_TABLE_CAPACITY};
use crate::config::model::{KvEvents, Server, DEFAULT_WEIGHT};
use crate::inference::kv_events::tokens::PromptTokens;
use crate::inference::prefix::PrefixModel;

/// What a sticky table is keyed by.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum StickyKey {
    Ip(IpAddr),
    Header(String),
}

/// One server of an upstream as the balancer sees it.
#[derive(Debug)]
pub struct Member {
    /// Opaque stable id: hash of upstream name and address (what the sticky cookie holds).
    pub id: u64,
    /// The address as configured (or `ip:port` when discovered): its identity.
    pub address: Arc<str>,
    pub socket: SocketAddr,
    /// The configured weight; [`Member::current_weight`] is the one in force.
    pub weight: u32,
    pub max_inflight: Option<u32>,
    /// `drain: true` in the file; [`Member::draining`] adds the runtime reasons.
    pub drain: bool,
    pub discovered: bool,
    /// Models the configuration says this server serves (inference upstreams); `None` leaves it
    /// to discovery.
    pub models: Option<Arc<[String]>>,
    /// Where the server publishes its KV-cache events, if configured.
    pub kv_events: Option<KvEvents>,
    pub state: Arc<ServerState>,
}

impl Member {
    /// The models this server serves: the configured list, else what it last listed itself;
    /// `None` while unknown.
    pub fn served_models(&self) -> Option<Arc<[String]>> {
        self.models.clone().or_else(|| self.state.signals.models())
    }
}

#[derive(Debug, Default)]
struct Inputs {
    configured: Vec<Server>,
    /// The upstream's `inference.models` list, for servers without their own.
    models: Option<Arc<[String]>>,
    /// `None` until discovery has answered once.
    discovered: Option<Vec<SocketAddr>>,
}

/// The long-lived state of one upstream.
#[derive(Debug)]
pub struct UpstreamPool {
    pub name: Arc<str>,
    members: ArcSwap<Vec<Arc<Member>>>,
    inputs: Mutex<Inputs>,
    /// Held while smooth round robin reads and updates the running weights.
    pub(super) rr_lock: Mutex<()>,
    pub(super) sticky: Mutex<StickyTable<StickyKey>>,
    /// Notified whenever an in-flight slot is given back (queued requests wait on it).
    pub(super) released: Arc<Notify>,
    pub(super) queued: AtomicU32,
    /// Rotates ties between equally loaded servers.
    pub(super) ticket: AtomicU64,
    /// Which prompt prefixes each server holds, and over how many servers each is spread
    /// (`cache_aware`).
    pub(super) prefix: Mutex<PrefixModel>,
    /// The engine block hashes of prompts' first messages (servers with `kv_events`).
    pub kv_tokens: PromptTokens,
    /// Where the queue is counted; `None` for a pool outside any registry (tests, benches).
    pub(super) metrics: Option<Arc<PoolMetrics>>,
}

impl UpstreamPool {
    /// A pool counting its queue in `metrics`.
    pub fn with_metrics(name: &str, metrics: Arc<PoolMetrics>) -> Self {
        Self {
            metrics: Some(metrics),
            ..Self::new(name)
        }
    }

    /// A pool whose queue is counted nowhere.
    pub fn new(name: &str) -> Self {
        Self {
            name: Arc::from(name),
            members: ArcSwap::from_pointee(Vec::new()),
            inputs: Mutex::new(Inputs::default()),
            rr_lock: Mutex::new(()),
            sticky: Mutex::new(StickyTable::new(DEFAULT_STICKY_TABLE_CAPACITY)),
            released: Arc::new(Notify::new()),
            queued: AtomicU32::new(0),
            ticket: AtomicU64::new(0),
            prefix: Mutex::new(PrefixModel::default()),
            kv_tokens: PromptTokens::default(),
            metrics: None,
        }
    }

    /// The members now.
    pub fn members(&self) -> Arc<Vec<Arc<Member>>> {
        self.members.load_full()
    }

    /// Whether any member publishes KV-cache events.
    pub fn follows_kv_events(&self) -> bool {
        self.members.load().iter().any(|m| m.kv_events.is_some())
    }

    /// Requests waiting in the queue now.
    pub fn queued(&self) -> u32 {
        self.queued.load(Ordering::Relaxed)
    }

    /// Sets the configured servers (start-up and reload).
    pub fn set_configured(&self, servers: &[Server], discovery: bool, models: Option<&[String]>) {
        let mut inputs = self.inputs.lock();
        inputs.configured = servers.to_vec();
        inputs.models = models.map(Arc::from);
        if !discovery {
            inputs.discovered = None;
        }
        self.rebuild(&inputs);
    }

    /// The member addresses [`Self::set_configured`] with `servers` would give, in order: the
    /// configured ones, then (with `discovery`) those discovery found last. Changes nothing.
    pub fn addresses_for(&self, servers: &[Server], discovery: bool) -> Vec<Arc<str>> {
        let mut addresses: Vec<Arc<str>> = Vec::with_capacity(servers.len());
        let mut add = |address: &str| {
            if let Some(known) = self.members.load().iter().find(|m| *m.address == *address) {
                if !addresses.contains(&known.address) {
                    addresses.push(known.address.clone());
                }
            } else if !addresses.iter().any(|a| **a == *address) {
                addresses.push(Arc::from(address));
            }
        };
        for server in servers {
            add(&server.address);
        }
        if discovery {
            let found = self.inputs.lock().discovered.clone();
            for socket in found.iter().flatten() {
                add(&socket.to_string());
            }
        }
        addresses
    }

    /// Sets the addresses DNS discovery found; returns true when the member list changed.
    pub fn set_discovered(&self, mut found: Vec<SocketAddr>) -> bool {
        found.sort();
        found.dedup();
        let mut inputs = self.inputs.lock();
        if inputs.discovered.as_ref() == Some(&found) {
            return false;
        }
        inputs.discovered = Some(found);
        self.rebuild(&inputs);
        true
    }

    /// New member list from the inputs, reusing the state of members that stay.
    fn rebuild(&self, inputs: &Inputs) {
        let old = self.members.load();
        let previous: HashMap<&str, &Arc<Member>> = old.iter().map(|m| (&*m.address, m)).collect();
        let mut next: Vec<Arc<Member>> = Vec::new();
        let mut add = |address: String,
                       socket,
                       weight,
                       max_inflight,
                       drain,
                       discovered,
                       models: Option<Arc<[String]>>,
                       kv_events: Option<KvEvents>| {
            if next.iter().any(|m: &Arc<Member>| *m.address == *address) {
                return;
            }
            let kept = previous.get(address.as_str());
            let state = kept.map(|m| m.state.clone()).unwrap_or_default();
            if kept.is_some_and(|m| m.weight != weight) {
                // The file's weight is the new base: a runtime weight set over the old one goes.
                state.admin.clear_weight();
            }
            next.push(Arc::new(Member {
                id: stable_hash(&[self.name.as_bytes(), address.as_bytes()]),
                // The same `Arc` as before: route observers find a member by pointer.
                address: kept.map_or_else(|| Arc::from(address.as_str()), |m| m.address.clone()),
                socket,
                weight,
                max_inflight,
                drain,
                discovered,
                models,
                kv_events,
                state,
            }));
        };
        for s in &inputs.configured {
            add(
                s.address.clone(),
                s.socket,
                s.weight,
                s.max_inflight,
                s.drain,
                false,
                s.models
                    .as_deref()
                    .map(Arc::from)
                    .or_else(|| inputs.models.clone()),
                s.kv_events.clone(),
            );
        }
        for socket in inputs.discovered.iter().flatten() {
            add(
                socket.to_string(),
                *socket,
                DEFAULT_WEIGHT,
                None,
                false,
                true,
                inputs.models.clone(),
                None,
            );
        }
        let ids: Vec<u64> = next.iter().map(|m| m.id).collect();
        self.members.store(Arc::new(next));
        let mut prefix = self.prefix.lock();
        prefix.index.retain_servers(&ids);
        prefix.spread.retain_servers(&ids);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(address: &str, weight: u32) -> Server {
        Server::new(address.parse().expect("socket"), weight)
    }

    #[test]
    fn rebuild_keeps_state_by_address() {
        let pool = UpstreamPool::new("u");
        pool.set_configured(
            &[server("127.0.0.1:1", 1), server("127.0.0.1:2", 1)],
            true,
            None,
        );
        let before = pool.members();
        pool.set_configured(
            &[server("127.0.0.1:2", 5), server("127.0.0.1:3", 1)],
            true,
            None,
        );
        let after = pool.members();
        assert_eq!(after.len(), 2);
        assert!(Arc::ptr_eq(&before[1].state, &after[0].state));
        assert_eq!(after[0].weight, 5);
        assert_eq!(before[1].id, after[0].id);
        assert_ne!(after[0].id, after[1].id);
    }

    #[test]
    fn discovered_members_come_and_go() {
        let pool = UpstreamPool::new("u");
        pool.set_configured(&[server("127.0.0.1:1", 1)], true, None);
        let a: SocketAddr = "10.0.0.1:80".parse().expect("a");
        let b: SocketAddr = "10.0.0.2:80".parse().expect("b");
        assert!(pool.set_discovered(vec![b, a, a]));
        assert!(!pool.set_discovered(vec![a, b]));
        let kept = pool.members()[2].state.clone();
        assert_eq!(pool.members().len(), 3);
        assert!(pool.set_discovered(vec![b]));
        let members = pool.members();
        assert_eq!(members.len(), 2);
        assert!(members[1].discovered && Arc::ptr_eq(&members[1].state, &kept));
        // A reload keeps what discovery found.
        pool.set_configured(&[server("127.0.0.1:1", 2)], true, None);
        assert_eq!(pool.members().len(), 2);
        pool.set_configured(&[server("127.0.0.1:1", 2)], false, None);
        assert_eq!(pool.members().len(), 1);
    }
}
