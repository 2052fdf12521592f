//! One backend server's long-lived state, kept by identity (upstream + address) across reloads:
//! in-flight count, counters, health, recent errors, runtime admin settings. [`InflightGuard`] holds one in-flight slot
//! and gives it back when dropped, whatever ended the request.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use tokio::sync::Notify;

use super::health::HealthState;
use crate::config::model::Health;

/// Recent errors kept per server for status.
pub const RECENT_ERRORS_KEPT: usize = 8;

/// One recent failure seen on a server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecentError {
    /// Milliseconds since the Unix epoch.
    pub at_unix_ms: u64,
    /// `connect`, `5xx`, `proxy`, `check`.
    pub kind: &'static str,
}

/// Long-lived state of one server.
#[derive(Debug, Default)]
pub struct ServerState {
    inflight: AtomicU32,
    requests: AtomicU64,
    failures: AtomicU64,
    sticky_hits: AtomicU64,
    /// Smooth round robin's running weight (only touched under the pool's round robin lock).
    pub(super) rr_current: AtomicI64,
    health: Mutex<HealthState>,
    recent: Mutex<VecDeque<RecentError>>,
    /// An active check is running (a slow check is never overlapped by the next one).
    checking: AtomicBool,
    /// What an inference server reports about itself (models, queue, KV-cache use).
    pub signals: crate::inference::signals::NodeSignals,
    /// What `cache_aware` learned about it (slots, service time, prefill rate and backlog).
    pub model: crate::inference::node_model::NodeModel,
    /// The blocks its KV-cache events say it holds, when it publishes them.
    pub kv: Mutex<crate::inference::kv_events::NodeBlocks>,
    /// The admin state and runtime weight an operator set through the admin API.
    pub admin: super::admin::ServerAdmin,
}

impl ServerState {
    /// Requests outstanding now.
    pub fn inflight(&self) -> u32 {
        self.inflight.load(Ordering::Acquire)
    }

    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    pub fn sticky_hits(&self) -> u64 {
        self.sticky_hits.load(Ordering::Relaxed)
    }

    pub(super) fn count_sticky_hit(&self) {
        self.sticky_hits.fetch_add(1, Ordering::Relaxed);
    }

    /// A copy of the health state.
    pub fn health(&self) -> HealthState {
        self.health.lock().clone()
    }

    pub fn available(&self, now: Instant) -> bool {
        self.health.lock().available(now)
    }

    /// The share of its weight the server gets now (slow start); 1 without slow start, read
    /// without taking the lock.
    pub fn weight_factor(&self, slow_start: Option<std::time::Duration>, now: Instant) -> f64 {
        match slow_start {
            None => 1.0,
            Some(_) => self.health.lock().weight_factor(slow_start, now),
        }
    }

    pub fn recent_errors(&self) -> Vec<RecentError> {
        self.recent.lock().iter().cloned().collect()
    }

    /// Takes an in-flight slot unless `max` are taken; `released` is notified when it is given back.
    pub fn try_acquire(
        self: &Arc<Self>,
        max: Option<u32>,
        released: &Arc<Notify>,
    ) -> Option<InflightGuard> {
        let limit = max.unwrap_or(u32::MAX);
        self.inflight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < limit).then_some(n + 1)
            })
            .ok()?;
        self.requests.fetch_add(1, Ordering::Relaxed);
        Some(InflightGuard {
            server: self.clone(),
            released: released.clone(),
            started: Instant::now(),
            times_service: true,
        })
    }

    /// A connect error, reset or 5xx: counts toward passive ejection.
    pub fn record_failure(&self, policy: &Health, kind: &'static str, now: Instant) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        self.remember(kind);
        let ejected = self.health.lock().on_passive_failure(policy, now);
        if ejected {
            tracing::warn!(kind, "server ejected after consecutive failures");
        }
    }

    /// A good response: clears the passive failure streak.
    pub fn record_success(&self) {
        self.health.lock().on_passive_success();
    }

    /// Claims the right to run an active check; false while another one is still running.
    pub fn begin_check(&self) -> bool {
        !self.checking.swap(true, Ordering::AcqRel)
    }

    /// An active check result; releases the claim taken by [`Self::begin_check`]. Returns true
    /// when the verdict changed.
    pub fn record_check(&self, ok: bool, policy: &Health, now: Instant) -> bool {
        if !ok {
            self.remember("check");
        }
        let changed = self.health.lock().on_check(ok, policy, now);
        self.checking.store(false, Ordering::Release);
        changed
    }

    fn remember(&self, kind: &'static str) {
        let at_unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let mut recent = self.recent.lock();
        if recent.len() >= RECENT_ERRORS_KEPT {
            recent.pop_front();
        }
        recent.push_back(RecentError { at_unix_ms, kind });
    }
}

/// One in-flight slot on a server, released on drop: request done, failed, retried elsewhere or
/// abandoned by the client.
#[derive(Debug)]
pub struct InflightGuard {
    server: Arc<ServerState>,
    released: Arc<Notify>,
    started: Instant,
    /// Whether the time the slot was held teaches the server's service time (false for a
    /// request predicted to queue on the server: its time includes the wait).
    times_service: bool,
}

impl InflightGuard {
    pub fn server(&self) -> &Arc<ServerState> {
        &self.server
    }

    /// Keeps this request's time out of the server's learned service time.
    pub fn skip_service_time(&mut self) {
        self.times_service = false;
    }
}

impl Drop for InflightGuard {
    fn drop(&mut self) {
        if self.times_service {
            self.server.model.observe_service(self.started.elapsed());
        }
        self.server.inflight.fetch_sub(1, Ordering::AcqRel);
        self.released.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guards_count_and_release() {
        let server = Arc::new(ServerState::default());
        let notify = Arc::new(Notify::new());
        let a = server.try_acquire(Some(2), &notify).expect("first");
        let b = server.try_acquire(Some(2), &notify).expect("second");
        assert!(server.try_acquire(Some(2), &notify).is_none());
        assert_eq!(server.inflight(), 2);
        drop(a);
        assert_eq!(server.inflight(), 1);
        let c = server.try_acquire(None, &notify).expect("unlimited");
        drop((b, c));
        assert_eq!(server.inflight(), 0);
        assert_eq!(server.requests(), 3);
    }

    #[test]
    fn health_checks_never_touch_inflight() {
        let server = Arc::new(ServerState::default());
        let notify = Arc::new(Notify::new());
        let guard = server.try_acquire(None, &notify);
        let policy = Health::default();
        for _ in 0..10 {
            server.record_check(false, &policy, Instant::now());
            server.record_failure(&policy, "connect", Instant::now());
        }
        assert_eq!(server.inflight(), 1);
        assert_eq!(server.recent_errors().len(), RECENT_ERRORS_KEPT);
        drop(guard);
        assert_eq!(server.inflight(), 0);
    }
}
