//! A sticky table with a time to live and a bounded size: key → server id, refreshed on every
//! use (client_ip and header stickiness, like Kubernetes' ClientIP affinity). Pure: the caller
//! passes the current time.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// Entries a table keeps at most unless configured otherwise.
pub const DEFAULT_STICKY_TABLE_CAPACITY: usize = 100_000;

/// Sticky entries with expiry.
#[derive(Debug)]
pub struct StickyTable<K> {
    entries: HashMap<K, (u64, Instant)>,
    capacity: usize,
}

impl<K: Hash + Eq + Clone> StickyTable<K> {
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: HashMap::new(),
            capacity: capacity.max(1),
        }
    }

    /// The server id `key` is pinned to, if the entry has not expired.
    pub fn get(&self, key: &K, now: Instant) -> Option<u64> {
        self.entries
            .get(key)
            .filter(|(_, expires)| *expires > now)
            .map(|(id, _)| *id)
    }

    /// Pins `key` to `id` for `ttl` from `now` (refreshing an existing entry). When full, expired
    /// entries go first, then the one closest to expiry.
    pub fn insert(&mut self, key: K, id: u64, ttl: Duration, now: Instant) {
        if !self.entries.contains_key(&key) && self.entries.len() >= self.capacity {
            self.entries.retain(|_, (_, expires)| *expires > now);
            if self.entries.len() >= self.capacity {
                let oldest = self
                    .entries
                    .iter()
                    .min_by_key(|(_, (_, expires))| *expires)
                    .map(|(k, _)| k.clone());
                if let Some(oldest) = oldest {
                    self.entries.remove(&oldest);
                }
            }
        }
        self.entries.insert(key, (id, now + ttl));
    }

    /// Live entries per server id (for status).
    pub fn count_by_server(&self, now: Instant) -> HashMap<u64, usize> {
        let mut counts = HashMap::new();
        for (id, expires) in self.entries.values() {
            if *expires > now {
                *counts.entry(*id).or_insert(0) += 1;
            }
        }
        counts
    }

    /// Drops expired entries.
    pub fn sweep(&mut self, now: Instant) {
        self.entries.retain(|_, (_, expires)| *expires > now);
    }

    /// Entries held, expired or not.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_expire_after_ttl_and_refresh_on_insert() {
        let t0 = Instant::now();
        let ttl = Duration::from_secs(10);
        let mut table = StickyTable::new(10);
        table.insert("a", 1, ttl, t0);
        assert_eq!(table.get(&"a", t0 + Duration::from_secs(9)), Some(1));
        table.insert("a", 1, ttl, t0 + Duration::from_secs(9));
        assert_eq!(table.get(&"a", t0 + Duration::from_secs(18)), Some(1));
        assert_eq!(table.get(&"a", t0 + Duration::from_secs(19)), None);
        assert_eq!(table.count_by_server(t0 + Duration::from_secs(19)).len(), 0);
    }

    #[test]
    fn memory_is_bounded() {
        let t0 = Instant::now();
        let mut table = StickyTable::new(3);
        for k in 0..10u32 {
            table.insert(k, 7, Duration::from_secs(u64::from(k) + 1), t0);
        }
        assert_eq!(table.len(), 3);
        // The newest entries (latest expiry) survive.
        assert_eq!(table.get(&9, t0), Some(7));
        assert_eq!(table.get(&0, t0), None);
        assert_eq!(table.count_by_server(t0).get(&7), Some(&3));
        table.sweep(t0 + Duration::from_secs(100));
        assert!(table.is_empty());
    }
}
