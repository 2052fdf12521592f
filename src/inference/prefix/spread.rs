//! Which servers carry each hot prefix (a tenant's system prompt, keyed by its first block):
//! the servers its requests went to within a recent window, in the order they started to. The
//! first is the prefix's home; a later one is a replica `cache_aware` made when the home was
//! saturated. Requests prefer the earliest holder, so when the load drops the replicas get
//! nothing, age out of the window, and the prefix is back on one server.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// How long a server counts as a holder of a prefix after its last request of it.
pub const SPREAD_WINDOW: Duration = Duration::from_secs(10);
/// Prefixes tracked at most (the least recently used one is dropped beyond).
pub const MAX_TRACKED_PREFIXES: usize = 4_096;

#[derive(Debug, Clone, Copy)]
struct Holder {
    server: u64,
    since: Instant,
    last: Instant,
    requests: u64,
}

#[derive(Debug, Default)]
struct Entry {
    holders: Vec<Holder>,
    last: Option<Instant>,
}

/// One prefix's spread as status shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct PrefixSpread {
    /// The prefix's key (its first block's hash).
    pub key: u64,
    /// Servers holding it now, home first, with their requests in the window.
    pub holders: Vec<(u64, u64)>,
}

/// The spread of every tracked prefix.
#[derive(Debug, Default)]
pub struct Spread {
    prefixes: HashMap<u64, Entry>,
}

/// Mean and largest number of holders over the prefixes active now.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SpreadSummary {
    pub prefixes: usize,
    pub mean: f64,
    pub max: usize,
}

impl Spread {
    /// Records a request of prefix `key` sent to `server`.
    pub fn note(&mut self, key: u64, server: u64, now: Instant) {
        if !self.prefixes.contains_key(&key) && self.prefixes.len() >= MAX_TRACKED_PREFIXES {
            self.prune(now);
            if self.prefixes.len() >= MAX_TRACKED_PREFIXES {
                let oldest = self
                    .prefixes
                    .iter()
                    .min_by_key(|(_, e)| e.last)
                    .map(|(k, _)| *k);
                if let Some(oldest) = oldest {
                    self.prefixes.remove(&oldest);
                }
            }
        }
        let entry = self.prefixes.entry(key).or_default();
        entry.last = Some(now);
        expire(&mut entry.holders, now);
        match entry.holders.iter_mut().find(|h| h.server == server) {
            Some(h) => {
                h.last = now;
                h.requests += 1;
            }
            None => entry.holders.push(Holder {
                server,
                since: now,
                last: now,
                requests: 1,
            }),
        }
    }

    /// Where `server` ranks among the holders of `key` (0: home), if it is one.
    pub fn rank(&self, key: u64, server: u64, now: Instant) -> Option<usize> {
        self.prefixes
            .get(&key)?
            .holders
            .iter()
            .filter(|h| live(h, now))
            .position(|h| h.server == server)
    }

    /// Prefixes `server` holds now.
    pub fn held_by(&self, server: u64, now: Instant) -> usize {
        self.prefixes
            .values()
            .filter(|e| e.holders.iter().any(|h| h.server == server && live(h, now)))
            .count()
    }

    /// Forgets `server` everywhere.
    pub fn forget_server(&mut self, server: u64) {
        for entry in self.prefixes.values_mut() {
            entry.holders.retain(|h| h.server != server);
        }
    }

    /// Forgets every server not in `keep`.
    pub fn retain_servers(&mut self, keep: &[u64]) {
        for entry in self.prefixes.values_mut() {
            entry.holders.retain(|h| keep.contains(&h.server));
        }
    }

    /// Drops holders out of the window and prefixes left with none.
    pub fn prune(&mut self, now: Instant) {
        self.prefixes.retain(|_, e| {
            expire(&mut e.holders, now);
            !e.holders.is_empty()
        });
    }

    /// The spread over prefixes active now.
    pub fn summary(&self, now: Instant) -> SpreadSummary {
        let counts: Vec<usize> = self
            .prefixes
            .values()
            .map(|e| e.holders.iter().filter(|h| live(h, now)).count())
            .filter(|n| *n > 0)
            .collect();
        if counts.is_empty() {
            return SpreadSummary::default();
        }
        SpreadSummary {
            prefixes: counts.len(),
            mean: counts.iter().sum::<usize>() as f64 / counts.len() as f64,
            max: counts.iter().copied().max().unwrap_or(0),
        }
    }

    /// The `limit` prefixes with the most requests in the window, busiest first.
    pub fn busiest(&self, limit: usize, now: Instant) -> Vec<PrefixSpread> {
        let mut all: Vec<(u64, PrefixSpread)> = self
            .prefixes
            .iter()
            .filter_map(|(key, e)| {
                let holders: Vec<(u64, u64)> = e
                    .holders
                    .iter()
                    .filter(|h| live(h, now))
                    .map(|h| (h.server, h.requests))
                    .collect();
                let total = holders.iter().map(|h| h.1).sum::<u64>();
                (!holders.is_empty()).then_some((total, PrefixSpread { key: *key, holders }))
            })
            .collect();
        all.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.key.cmp(&b.1.key)));
        all.into_iter().take(limit).map(|(_, s)| s).collect()
    }
}

fn live(h: &Holder, now: Instant) -> bool {
    now.saturating_duration_since(h.last) < SPREAD_WINDOW
}

/// Drops holders out of the window; a holder's requests count only its current stay.
fn expire(holders: &mut Vec<Holder>, now: Instant) {
    holders.retain(|h| live(h, now));
    holders.sort_by_key(|h| h.since);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn home_first_replicas_age_out() {
        let mut spread = Spread::default();
        let t0 = Instant::now();
        spread.note(7, 1, t0);
        spread.note(7, 2, t0 + Duration::from_secs(1));
        spread.note(9, 2, t0 + Duration::from_secs(1));
        let now = t0 + Duration::from_secs(2);
        assert_eq!(spread.rank(7, 1, now), Some(0));
        assert_eq!(spread.rank(7, 2, now), Some(1));
        assert_eq!(spread.rank(7, 3, now), None);
        assert_eq!(spread.held_by(2, now), 2);
        let s = spread.summary(now);
        assert_eq!((s.prefixes, s.max), (2, 2));
        assert!((s.mean - 1.5).abs() < 1e-9);
        // Only the home keeps serving: the replica leaves the window.
        let later = t0 + SPREAD_WINDOW + Duration::from_secs(3);
        spread.note(7, 1, later);
        assert_eq!(spread.rank(7, 2, later), None);
        assert_eq!(spread.summary(later).max, 1);
        let busiest = spread.busiest(5, later);
        assert_eq!(busiest.len(), 1);
        // The home's stay began again after its gap: one request in it.
        assert_eq!(busiest[0].holders, vec![(1, 1)]);
        spread.prune(later);
        spread.forget_server(1);
        assert_eq!(spread.summary(later).prefixes, 0);
    }

    #[test]
    fn tracking_is_bounded() {
        let mut spread = Spread::default();
        let now = Instant::now();
        for key in 0..(MAX_TRACKED_PREFIXES as u64 + 10) {
            spread.note(key, 1, now);
        }
        assert!(spread.prefixes.len() <= MAX_TRACKED_PREFIXES);
    }
}
