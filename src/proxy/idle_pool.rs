//! Idle server connections of one worker thread, kept for reuse: filed by pool key, the most
//! recently used first, each for at most the idle timeout, the longest idle closed first when the
//! pool is full. Owned by one thread (no locks, no watcher task per connection); a connection
//! the server closed meanwhile is noticed when it is taken or swept and dropped.

use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasherDefault;
use std::time::{Duration, Instant};

use rustc_hash::FxHasher;

/// One idle connection and when it was pooled.
struct Entry<S> {
    since: Instant,
    stream: S,
}

/// Idle connections by pool key; each key's oldest first.
pub struct IdlePool<S> {
    by_key: HashMap<u64, VecDeque<Entry<S>>, BuildHasherDefault<FxHasher>>,
    /// Connections under all keys, counted as they come and go (a full pool is then known
    /// without counting every key's queue).
    len: usize,
    capacity: usize,
    idle: Duration,
}

impl<S> IdlePool<S> {
    /// A pool holding at most `capacity` connections, each for at most `idle`.
    pub fn new(capacity: usize, idle: Duration) -> Self {
        Self {
            by_key: HashMap::default(),
            len: 0,
            capacity,
            idle,
        }
    }

    /// Connections held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no connection is held.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Files `stream` under `key` as the most recently used. When the pool is full, the
    /// connection idle longest (under any key) is closed to make room.
    pub fn put(&mut self, key: u64, stream: S, now: Instant) {
        if self.capacity == 0 {
            return;
        }
        if self.len >= self.capacity {
            self.drop_oldest();
        }
        self.by_key
            .entry(key)
            .or_default()
            .push_back(Entry { since: now, stream });
        self.len += 1;
    }

    /// The most recently pooled connection under `key` that is still within the idle timeout
    /// and that `usable` accepts; the ones looked at and refused on the way are dropped.
    pub fn take(
        &mut self,
        key: u64,
        now: Instant,
        mut usable: impl FnMut(&mut S) -> bool,
    ) -> Option<S> {
        let idle = self.idle;
        let queue = self.by_key.get_mut(&key)?;
        let mut found = None;
        while let Some(mut entry) = queue.pop_back() {
            self.len -= 1;
            if now.saturating_duration_since(entry.since) <= idle && usable(&mut entry.stream) {
                found = Some(entry.stream);
                break;
            }
        }
        if queue.is_empty() {
            self.by_key.remove(&key);
        }
        found
    }

    /// Drops every connection past the idle timeout or that `usable` refuses (the server
    /// closed it or spoke unasked).
    pub fn sweep(&mut self, now: Instant, mut usable: impl FnMut(&mut S) -> bool) {
        let idle = self.idle;
        let mut dropped = 0;
        self.by_key.retain(|_, queue| {
            let before = queue.len();
            queue.retain_mut(|entry| {
                now.saturating_duration_since(entry.since) <= idle && usable(&mut entry.stream)
            });
            dropped += before - queue.len();
            !queue.is_empty()
        });
        self.len -= dropped;
    }

    /// Closes the connection pooled longest ago.
    fn drop_oldest(&mut self) {
        let oldest = self
            .by_key
            .iter()
            .filter_map(|(key, queue)| queue.front().map(|entry| (entry.since, *key)))
            .min();
        let Some((_, key)) = oldest else {
            return;
        };
        if let Some(queue) = self.by_key.get_mut(&key) {
            queue.pop_front();
            self.len -= 1;
            if queue.is_empty() {
                self.by_key.remove(&key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IDLE: Duration = Duration::from_secs(60);

    fn at(start: Instant, secs: u64) -> Instant {
        start + Duration::from_secs(secs)
    }

    #[test]
    fn takes_the_most_recent_connection_of_its_key() {
        let t = Instant::now();
        let mut pool = IdlePool::new(8, IDLE);
        pool.put(1, "a1", t);
        pool.put(2, "b1", t);
        pool.put(1, "a2", at(t, 1));
        assert_eq!(pool.len(), 3);
        assert_eq!(pool.take(1, at(t, 2), |_| true), Some("a2"));
        assert_eq!(pool.take(1, at(t, 2), |_| true), Some("a1"));
        assert_eq!(pool.take(1, at(t, 2), |_| true), None);
        assert_eq!(pool.take(3, at(t, 2), |_| true), None);
        assert_eq!(pool.len(), 1);
        assert_eq!(pool.take(2, at(t, 2), |_| true), Some("b1"));
        assert_eq!(pool.len(), 0);
        assert!(pool.by_key.is_empty(), "emptied keys are forgotten");
    }

    #[test]
    fn a_connection_past_its_idle_timeout_or_refused_is_dropped_not_returned() {
        let t = Instant::now();
        let mut pool = IdlePool::new(8, IDLE);
        pool.put(1, "old", t);
        pool.put(1, "closed", at(t, 50));
        pool.put(1, "live", at(t, 55));
        // The newest is live.
        assert_eq!(pool.take(1, at(t, 61), |_| true), Some("live"));
        // The next one the server closed, and the one after it idled out: both dropped.
        assert_eq!(pool.take(1, at(t, 61), |s| *s != "closed"), None);
        assert_eq!(pool.len(), 0);
    }

    #[test]
    fn a_full_pool_closes_the_connection_idle_longest() {
        let t = Instant::now();
        let mut pool = IdlePool::new(2, IDLE);
        pool.put(1, "a", t);
        pool.put(2, "b", at(t, 1));
        pool.put(2, "c", at(t, 2));
        assert_eq!(pool.len(), 2);
        assert_eq!(pool.take(1, at(t, 3), |_| true), None, "the oldest went");
        assert_eq!(pool.take(2, at(t, 3), |_| true), Some("c"));
        assert_eq!(pool.take(2, at(t, 3), |_| true), Some("b"));
        let mut none = IdlePool::new(0, IDLE);
        none.put(1, "x", t);
        assert_eq!(none.len(), 0, "a pool of size 0 keeps nothing");
    }

    #[test]
    fn a_sweep_drops_what_idled_out_or_closed() {
        let t = Instant::now();
        let mut pool = IdlePool::new(8, IDLE);
        pool.put(1, "old", t);
        pool.put(1, "live", at(t, 30));
        pool.put(2, "closed", at(t, 30));
        pool.put(3, "fresh", at(t, 40));
        pool.sweep(at(t, 61), |s| *s != "closed");
        assert_eq!(pool.len(), 2);
        assert!(!pool.by_key.contains_key(&2), "an emptied key is forgotten");
        assert_eq!(pool.take(1, at(t, 61), |_| true), Some("live"));
        assert_eq!(pool.take(1, at(t, 61), |_| true), None);
        assert_eq!(pool.take(3, at(t, 61), |_| true), Some("fresh"));
    }
}
