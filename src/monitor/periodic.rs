//! Per-upstream periodic work for background services (active health checks, DNS discovery):
//! each round reads the current snapshot, starts what is due for each upstream that asks for it,
//! and sleeps until the next due time or a short tick, so a reload changes the work at once.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pingora::server::ShutdownWatch;

use crate::runtime::{SnapshotStore, UpstreamRuntime};

/// Runs `start` for every upstream whose `period` is `Some`, once per period, until shutdown.
/// `start` must not block: it spawns or records and returns.
pub async fn every_upstream(
    snapshots: &SnapshotStore,
    tick: Duration,
    mut shutdown: ShutdownWatch,
    period: impl Fn(&UpstreamRuntime) -> Option<Duration>,
    mut start: impl FnMut(&Arc<UpstreamRuntime>),
) {
    let mut next_due: HashMap<Arc<str>, Instant> = HashMap::new();
    loop {
        let snapshot = snapshots.load();
        let now = Instant::now();
        let mut sleep = tick;
        for upstream in snapshot.upstreams() {
            let Some(every) = period(upstream) else {
                continue;
            };
            let due = next_due.entry(upstream.name.clone()).or_insert(now);
            if *due <= now {
                *due = now + every;
                start(upstream);
            }
            sleep = sleep.min(due.saturating_duration_since(now));
        }
        next_due.retain(|name, _| snapshot.upstreams().iter().any(|u| u.name == *name));
        drop(snapshot);
        tokio::select! {
            _ = tokio::time::sleep(sleep) => {}
            _ = shutdown.changed() => return,
        }
    }
}
