//! The history sampler, a background service: every `admin.history.step` it gathers the metric
//! families and looks at the pools (both read-only; nothing here is on the request path),
//! sums what the configuration in force names into a [`Reading`](reading::Reading), turns it
//! and the previous one into a point of every series, and records that in the long-lived
//! [`History`](crate::observe::History). A changed step starts the history over; without an
//! admin listener it only waits.

pub mod reading;

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

use crate::observe::clock::unix_millis;
use crate::observe::history::point::{points, Reading};
use crate::runtime::{Live, Snapshot};
use reading::{NodeNow, Watched};

/// Longest sleep between two looks at the step in force (history off, or a long step).
pub const SAMPLER_IDLE_TICK: Duration = Duration::from_secs(1);

/// The history sampler service.
pub struct HistorySampler {
    live: Arc<Live>,
}

impl HistorySampler {
    pub fn new(live: Arc<Live>) -> Self {
        Self { live }
    }

    /// Reads everything now and records the step since `before`; returns the new reading.
    fn sample(&self, before: Option<&Reading>) -> Reading {
        let watched = watched(&self.live.snapshots.load());
        let families = self.live.observe.metrics.gather();
        let now = reading::read(&families, &watched, Instant::now());
        // The first reading after a start or a new step only sets the baseline.
        if before.is_some() {
            let points = points(before, &now);
            self.live
                .observe
                .history
                .record(now.at, unix_millis(), &points);
        }
        now
    }
}

/// What `snapshot` names: its routes, its upstreams, and the members of its inference
/// upstreams with their in-flight counts and last scraped load.
pub fn watched(snapshot: &Snapshot) -> Watched {
    let mut watched = Watched::default();
    for target in snapshot.targets() {
        watched.routes.insert(target.name.to_string());
    }
    for upstream in snapshot.upstreams() {
        watched.upstreams.insert(upstream.name.to_string());
        if upstream.inference.is_none() {
            continue;
        }
        watched.inference.insert(upstream.name.to_string());
        for member in upstream.pool.members().iter() {
            watched.nodes.push(NodeNow {
                upstream: upstream.name.to_string(),
                address: member.address.to_string(),
                in_flight: member.state.inflight(),
                load: member.state.signals.last_load().map(|(load, _)| load),
            });
        }
    }
    watched
}

#[async_trait]
impl BackgroundService for HistorySampler {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut before: Option<Reading> = None;
        let mut step_in_force = None;
        let mut next = tokio::time::Instant::now();
        loop {
            let step = self.live.observe.history.step();
            let now = tokio::time::Instant::now();
            if step != step_in_force {
                before = None;
                step_in_force = step;
                next = now;
            }
            if let Some(step) = step {
                if now >= next {
                    before = Some(self.sample(before.as_ref()));
                    // Late by more than a step (a stalled runtime): the rhythm starts again.
                    next = (next + step).max(now);
                }
            }
            // Never asleep for longer than the idle tick, so a reload's new step applies soon.
            let wake = match step {
                Some(_) => next.min(now + SAMPLER_IDLE_TICK),
                None => now + SAMPLER_IDLE_TICK,
            };
            tokio::select! {
                _ = tokio::time::sleep_until(wake) => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}
