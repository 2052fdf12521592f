//! What the proxy has seen of each backend server, keyed by (upstream, address) so it survives
//! reloads: requests in flight, connection failures in a row (the passive state: a server whose
//! last connection attempt failed is `down` until one succeeds), the last success and a short ring
//! of recent errors for the status page. Written from the request path with atomics; the error ring takes
//! a lock only when an error happens.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use serde::Serialize;

use super::clock::unix_millis;

/// Connection failures in a row after which a server counts as down (passively).
pub const DEFAULT_PASSIVE_DOWN_AFTER: u64 = 1;

/// Recent errors kept per server.
pub const DEFAULT_RECENT_ERRORS: usize = 5;

/// A server's state as far as the proxy has seen it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PassiveState {
    /// No attempt yet.
    Unknown,
    Up,
    Down,
}

/// One recorded failure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecentError {
    /// Unix milliseconds.
    pub at_ms: i64,
    /// Short kind, e.g. `ConnectRefused`, `ReadTimedout`.
    pub kind: String,
    /// The route the failing request came through.
    pub route: String,
}

/// Counters of one server.
#[derive(Debug, Default)]
pub struct ServerStats {
    in_flight: AtomicI64,
    attempts: AtomicU64,
    failures_in_row: AtomicU64,
    connect_errors: AtomicU64,
    last_success_ms: AtomicI64,
    recent: Mutex<VecDeque<RecentError>>,
}

/// A copy of a server's counters at one moment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServerView {
    pub state: PassiveState,
    pub in_flight: i64,
    /// Times a request was assigned to this server (retries included).
    pub attempts: u64,
    pub connect_errors: u64,
    pub failures_in_row: u64,
    /// Unix milliseconds of the last response header received; `None` before the first.
    pub last_success_ms: Option<i64>,
    /// Newest first.
    pub recent_errors: Vec<RecentError>,
}

impl ServerStats {
    /// A request was assigned to this server; the returned guard ends it when dropped.
    pub fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.attempts.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }

    /// The server answered (a response header arrived).
    pub fn succeeded(&self) {
        if self.failures_in_row.load(Ordering::Relaxed) != 0 {
            self.failures_in_row.store(0, Ordering::Relaxed);
        }
        self.last_success_ms.store(unix_millis(), Ordering::Relaxed);
    }

    /// A connection attempt failed; returns whether the server is now passively down.
    pub fn connect_failed(&self, kind: &str, route: &str) -> bool {
        self.connect_errors.fetch_add(1, Ordering::Relaxed);
        let in_row = self.failures_in_row.fetch_add(1, Ordering::Relaxed) + 1;
        self.record(kind, route);
        in_row >= DEFAULT_PASSIVE_DOWN_AFTER
    }

    /// Any other failure of a request on this server (timeouts, resets); does not change state.
    pub fn record(&self, kind: &str, route: &str) {
        let mut recent = self.recent.lock();
        if recent.len() == DEFAULT_RECENT_ERRORS {
            recent.pop_back();
        }
        recent.push_front(RecentError {
            at_ms: unix_millis(),
            kind: kind.to_string(),
            route: route.to_string(),
        });
    }

    /// The passive state: down after failed connections in a row, up after a response.
    pub fn state(&self) -> PassiveState {
        if self.failures_in_row.load(Ordering::Relaxed) >= DEFAULT_PASSIVE_DOWN_AFTER {
            PassiveState::Down
        } else if self.last_success_ms.load(Ordering::Relaxed) > 0 {
            PassiveState::Up
        } else {
            PassiveState::Unknown
        }
    }

    pub fn view(&self) -> ServerView {
        let failures_in_row = self.failures_in_row.load(Ordering::Relaxed);
        let last_success = self.last_success_ms.load(Ordering::Relaxed);
        let state = self.state();
        let recent_errors = self.recent.lock().iter().cloned().collect();
        ServerView {
            state,
            in_flight: self.in_flight.load(Ordering::Relaxed),
            attempts: self.attempts.load(Ordering::Relaxed),
            connect_errors: self.connect_errors.load(Ordering::Relaxed),
            failures_in_row,
            last_success_ms: (last_success > 0).then_some(last_success),
            recent_errors,
        }
    }
}

/// Holds one unit of a server's in-flight count.
#[derive(Debug)]
pub struct InFlight(Arc<ServerStats>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

type Key = (String, String);

/// Every server's stats by (upstream, address). Long-lived: a reload looks entries up while it
/// prepares ([`Self::get`]), adds the new ones when it commits ([`Self::adopt`]) and forgets
/// the servers no configuration names any more when it retires ([`Self::retain`]).
#[derive(Debug, Default)]
pub struct ServerStatsRegistry {
    map: RwLock<BTreeMap<Key, Arc<ServerStats>>>,
}

impl ServerStatsRegistry {
    /// The stats of (upstream, server address), if known.
    pub fn get(&self, upstream: &str, address: &str) -> Option<Arc<ServerStats>> {
        self.map
            .read()
            .get(&(upstream.to_string(), address.to_string()))
            .cloned()
    }

    /// The stats of (upstream, server address), created and kept on first use.
    pub fn stats(&self, upstream: &str, address: &str) -> Arc<ServerStats> {
        if let Some(found) = self.get(upstream, address) {
            return found;
        }
        let key = (upstream.to_string(), address.to_string());
        self.map.write().entry(key).or_default().clone()
    }

    /// Keeps `stats` for (upstream, address) (a configuration being committed).
    pub fn adopt(&self, upstream: &str, address: &str, stats: &Arc<ServerStats>) {
        self.map
            .write()
            .insert((upstream.to_string(), address.to_string()), stats.clone());
    }

    /// Forgets every server for which `keep(upstream, address)` is false.
    pub fn retain(&self, mut keep: impl FnMut(&str, &str) -> bool) {
        self.map
            .write()
            .retain(|(upstream, address), _| keep(upstream, address));
    }

    /// Calls `f` with every known (upstream, server address) and its stats.
    pub fn for_each(&self, mut f: impl FnMut(&str, &str, &ServerStats)) {
        for ((upstream, address), stats) in self.map.read().iter() {
            f(upstream, address, stats);
        }
    }

    /// The view of (upstream, server address); `None` when no request or config ever named it.
    pub fn view(&self, upstream: &str, address: &str) -> Option<ServerView> {
        self.get(upstream, address).map(|s| s.view())
    }

    /// How many servers are known.
    pub fn len(&self) -> usize {
        self.map.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passive_state_follows_attempts() {
        let stats = Arc::new(ServerStats::default());
        assert_eq!(stats.view().state, PassiveState::Unknown);
        {
            let _guard = stats.begin();
            assert_eq!(stats.view().in_flight, 1);
            stats.succeeded();
        }
        let view = stats.view();
        assert_eq!((view.state, view.in_flight), (PassiveState::Up, 0));
        assert!(stats.connect_failed("ConnectRefused", "r"));
        let view = stats.view();
        assert_eq!(view.state, PassiveState::Down);
        assert_eq!((view.connect_errors, view.failures_in_row), (1, 1));
        assert_eq!(view.recent_errors[0].kind, "ConnectRefused");
        stats.succeeded();
        assert_eq!(stats.view().state, PassiveState::Up);
        assert_eq!(stats.view().connect_errors, 1, "the total stays");
    }

    #[test]
    fn recent_errors_are_bounded_newest_first() {
        let stats = ServerStats::default();
        for i in 0..(DEFAULT_RECENT_ERRORS + 3) {
            stats.record(&format!("e{i}"), "r");
        }
        let view = stats.view();
        assert_eq!(view.recent_errors.len(), DEFAULT_RECENT_ERRORS);
        assert_eq!(
            view.recent_errors[0].kind,
            format!("e{}", DEFAULT_RECENT_ERRORS + 2)
        );
        assert_eq!(
            view.state,
            PassiveState::Unknown,
            "other errors keep the state"
        );
    }

    #[test]
    fn registry_returns_the_same_stats_for_the_same_key() {
        let registry = ServerStatsRegistry::default();
        let a = registry.stats("unit-up", "10.0.0.1:80");
        let b = registry.stats("unit-up", "10.0.0.1:80");
        assert!(Arc::ptr_eq(&a, &b));
        assert!(registry.view("unit-up", "10.0.0.1:80").is_some());
        assert!(registry.view("unit-up", "10.0.0.2:80").is_none());
        let adopted = Arc::new(ServerStats::default());
        registry.adopt("unit-up", "10.0.0.2:80", &adopted);
        assert!(Arc::ptr_eq(
            &registry.get("unit-up", "10.0.0.2:80").expect("adopted"),
            &adopted
        ));
        registry.retain(|_, address| address == "10.0.0.2:80");
        assert_eq!(registry.len(), 1);
    }
}
