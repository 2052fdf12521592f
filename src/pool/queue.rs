//! Admission: a request that finds every eligible server at `max_inflight` waits in the
//! upstream's bounded queue until a slot is given back or `queue.timeout` passes (HAProxy
//! `maxconn` + `timeout queue`); a full queue or an expired wait is refused with a retry hint
//! from the predicted time until the cheapest server drains, not the configured timeout.

use std::pin::pin;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::members::UpstreamPool;
use super::select::{inference, Outcome, Pick, RequestInfo, Rules};
use crate::config::model::Queue;

/// Why no server was given to a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No server can take it (none configured, all tried, all down and draining).
    Unavailable,
    /// Every server is busy and the queue is full or the wait expired: retry after this many
    /// seconds.
    Overloaded { retry_after_secs: u64 },
}

/// A place in the queue, given back on drop (the queue-depth gauge follows).
struct QueueSlot<'a>(&'a UpstreamPool);

impl Drop for QueueSlot<'_> {
    fn drop(&mut self) {
        let before = self.0.queued.fetch_sub(1, Ordering::AcqRel);
        if let Some(metrics) = &self.0.metrics {
            metrics.queue_depth(&self.0.name, i64::from(before.saturating_sub(1)));
        }
    }
}

/// Longest a request whose prompt was seen before waits for its first message to be tokenized
/// (upstreams whose servers publish KV-cache events); later requests find it ready.
pub const TOKENIZE_BUDGET: Duration = Duration::from_millis(25);

/// Longest Retry-After hint given.
pub const MAX_RETRY_AFTER_SECS: f64 = 600.0;

/// The Retry-After hint for a refused request: the predicted drain time (seconds), rounded up,
/// at least one second.
pub fn retry_after_secs(drain_secs: f64) -> u64 {
    if !drain_secs.is_finite() {
        return MAX_RETRY_AFTER_SECS as u64;
    }
    drain_secs.ceil().clamp(1.0, MAX_RETRY_AFTER_SECS) as u64
}

impl UpstreamPool {
    fn count_queue_rejection(&self) {
        if let Some(metrics) = &self.metrics {
            metrics.queue_rejected(&self.name);
        }
    }

    /// Seconds until the cheapest available server is predicted to have room for one more
    /// request, with the router's queue shared among the servers: the requests ahead of it
    /// beyond its slots, each holding a slot for the server's observed service time. Slots are
    /// the engine's learned batch size (inference upstreams) or `max_inflight`.
    pub fn predicted_drain_secs(&self, rules: &Rules<'_>, now: Instant) -> f64 {
        let members = self.members();
        let open: Vec<_> = members
            .iter()
            .filter(|m| !m.drain && m.state.available(now))
            .collect();
        if open.is_empty() {
            return f64::INFINITY;
        }
        let share = f64::from(self.queued()) / open.len() as f64;
        open.iter()
            .map(|m| {
                let estimates = m.state.model.estimates(1.0, now);
                let (ahead, slots) = match rules.inference {
                    Some(settings) => (
                        inference::load(m, settings, true, now),
                        inference::slots(m, estimates.batch_slots),
                    ),
                    None => (
                        f64::from(m.state.inflight()),
                        m.max_inflight.map_or(1.0, f64::from).max(1.0),
                    ),
                };
                ((ahead - slots).max(0.0) + share + 1.0) * estimates.service_secs / slots
            })
            .min_by(f64::total_cmp)
            .unwrap_or(f64::INFINITY)
    }

    fn refusal(&self, rules: &Rules<'_>) -> Refusal {
        Refusal::Overloaded {
            retry_after_secs: retry_after_secs(self.predicted_drain_secs(rules, Instant::now())),
        }
    }

    /// Selects a server, waiting in the queue while every eligible one is full.
    pub async fn acquire(
        &self,
        rules: &Rules<'_>,
        req: &RequestInfo<'_>,
        queue: &Queue,
    ) -> Result<Pick, Refusal> {
        if let Some(facts) = req.inference.filter(|_| self.follows_kv_events()) {
            if let Some(lead) = &facts.lead {
                // Exact routing needs the prompt's tokens. For a prompt seen before, where it
                // is cached matters: wait for them briefly, else the approximate index decides.
                // A new one is held by no server: it is tokenized meanwhile, for its follow-ups.
                if self.prefix_seen(&facts.hashes) {
                    let _ = self.kv_tokens.wait(lead, TOKENIZE_BUDGET).await;
                } else {
                    let _ = self.kv_tokens.lookup(lead, Instant::now());
                }
            }
        }
        let mut slot: Option<QueueSlot<'_>> = None;
        let mut deadline: Option<Instant> = None;
        loop {
            // Registered before selecting, so a slot freed in between still wakes us.
            let released = self.released.clone();
            let mut notified = pin!(released.notified());
            notified.as_mut().enable();
            match self.select(rules, req, Instant::now()) {
                Outcome::Picked(pick) => return Ok(pick),
                Outcome::Unavailable => return Err(Refusal::Unavailable),
                Outcome::Full => {}
            }
            if slot.is_none() {
                let entered = self
                    .queued
                    .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                        (n < queue.size).then_some(n + 1)
                    });
                match entered {
                    Ok(before) => {
                        if let Some(metrics) = &self.metrics {
                            metrics.queue_depth(&self.name, i64::from(before) + 1);
                        }
                    }
                    Err(_) => {
                        self.count_queue_rejection();
                        return Err(self.refusal(rules));
                    }
                }
                slot = Some(QueueSlot(self));
            }
            let until = *deadline.get_or_insert_with(|| Instant::now() + queue.timeout);
            let left = until.saturating_duration_since(Instant::now());
            if left == Duration::ZERO || tokio::time::timeout(left, notified).await.is_err() {
                self.count_queue_rejection();
                drop(slot);
                return Err(self.refusal(rules));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use http::HeaderMap;

    use super::*;
    use crate::config::model::{Balance, Server};

    fn limited_pool() -> Arc<UpstreamPool> {
        let pool = UpstreamPool::new("q");
        pool.set_configured(
            &[Server {
                max_inflight: Some(1),
                ..Server::new(([127, 0, 0, 1], 1).into(), 1)
            }],
            false,
            None,
        );
        Arc::new(pool)
    }

    #[tokio::test]
    async fn waits_for_a_slot_then_refuses_overflow() {
        let pool = limited_pool();
        let balance = Balance::RoundRobin;
        let rules = Rules {
            balance: &balance,
            sticky: None,
            slow_start: None,
            inference: None,
            may_queue: true,
        };
        let headers = HeaderMap::new();
        let req = RequestInfo {
            client_ip: None,
            headers: &headers,
            tried: &[],
            inference: None,
        };
        let queue = Queue {
            size: 1,
            timeout: Duration::from_secs(5),
        };
        let first = pool.acquire(&rules, &req, &queue).await.expect("first");
        let waiter = {
            let pool = pool.clone();
            tokio::spawn(async move {
                let balance = Balance::RoundRobin;
                let rules = Rules {
                    balance: &balance,
                    sticky: None,
                    slow_start: None,
                    inference: None,
                    may_queue: true,
                };
                let headers = HeaderMap::new();
                let req = RequestInfo {
                    client_ip: None,
                    headers: &headers,
                    tried: &[],
                    inference: None,
                };
                pool.acquire(&rules, &req, &queue)
                    .await
                    .map(|p| p.member.id)
            })
        };
        while pool.queued() == 0 {
            tokio::task::yield_now().await;
        }
        // The queue holds one: the next is refused at once. The hint is the predicted drain,
        // not the 5 s timeout: the one running request and the queued one ahead, one slot, the
        // default 1 s service time.
        let refused = pool.acquire(&rules, &req, &queue).await;
        assert_eq!(
            refused.map(|p| p.member.id),
            Err(Refusal::Overloaded {
                retry_after_secs: 2
            })
        );
        drop(first);
        assert!(waiter.await.expect("join").is_ok());
        assert_eq!(pool.queued(), 0);
        assert_eq!(pool.members()[0].state.inflight(), 0);
    }

    #[tokio::test]
    async fn an_expired_wait_is_refused() {
        let pool = limited_pool();
        let balance = Balance::RoundRobin;
        let rules = Rules {
            balance: &balance,
            sticky: None,
            slow_start: None,
            inference: None,
            may_queue: true,
        };
        let headers = HeaderMap::new();
        let req = RequestInfo {
            client_ip: None,
            headers: &headers,
            tried: &[],
            inference: None,
        };
        let queue = Queue {
            size: 4,
            timeout: Duration::from_millis(50),
        };
        let _held = pool.acquire(&rules, &req, &queue).await.expect("first");
        let refused = pool.acquire(&rules, &req, &queue).await;
        assert!(matches!(
            refused,
            Err(Refusal::Overloaded {
                retry_after_secs: 1
            })
        ));
        assert_eq!(pool.queued(), 0);
    }
}
