//! Token buckets for rate limits: the pure refill/take arithmetic, and a bounded, sharded table
//! of buckets by key. An idle key's bucket refills to full, which is the same as having none, so
//! full buckets are what eviction drops when the table reaches its bound.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::time::Instant;

use parking_lot::Mutex;

/// Keys one rate limiter tracks at most (per route); beyond that, new keys share one bucket.
pub const DEFAULT_MAX_KEYS: usize = 100_000;

/// Independent locks per table, so concurrent requests for different keys rarely contend.
const SHARDS: usize = 16;

/// One key's bucket.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// A bucket's parameters: refill per second and capacity.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    pub per_second: f64,
    pub burst: u32,
}

impl Bucket {
    /// A full bucket.
    pub fn full(rate: Rate, now: Instant) -> Self {
        Self {
            tokens: f64::from(rate.burst),
            updated: now,
        }
    }

    fn refill(&mut self, rate: Rate, now: Instant) {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate.per_second).min(f64::from(rate.burst));
        self.updated = now;
    }

    /// Takes one token; when there is none, the whole seconds until one is there (at least 1).
    pub fn take(&mut self, rate: Rate, now: Instant) -> Result<(), u64> {
        self.refill(rate, now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            let wait = (1.0 - self.tokens) / rate.per_second.max(f64::MIN_POSITIVE);
            Err(wait.ceil().clamp(1.0, u32::MAX as f64) as u64)
        }
    }

    /// Whether the bucket has refilled completely by `now` (its key may be forgotten).
    pub fn is_full(&self, rate: Rate, now: Instant) -> bool {
        let mut copy = *self;
        copy.refill(rate, now);
        copy.tokens >= f64::from(rate.burst)
    }
}

/// The buckets of one rate limit, by key.
#[derive(Debug)]
pub struct BucketTable {
    rate: Rate,
    max_keys_per_shard: usize,
    hasher: RandomState,
    shards: Vec<Mutex<HashMap<u64, Bucket>>>,
}

/// The key all requests share once the table is full of active keys.
const OVERFLOW_KEY: u64 = u64::MAX;

impl BucketTable {
    pub fn new(rate: Rate, max_keys: usize) -> Self {
        Self {
            rate,
            max_keys_per_shard: (max_keys / SHARDS).max(1),
            hasher: RandomState::new(),
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }

    pub fn rate(&self) -> Rate {
        self.rate
    }

    /// Takes a token from `key`'s bucket; `Err(seconds)` to wait when it is empty.
    pub fn take(&self, key: &[u8], now: Instant) -> Result<(), u64> {
        let hash = self.hasher.hash_one(key);
        let shard = &self.shards[(hash as usize) % SHARDS];
        let mut buckets = shard.lock();
        let rate = self.rate;
        let mut slot = hash.min(OVERFLOW_KEY - 1);
        if !buckets.contains_key(&slot) && buckets.len() >= self.max_keys_per_shard {
            // Full of keys: forget the idle ones; if every key is active, share one bucket.
            buckets.retain(|_, bucket| !bucket.is_full(rate, now));
            if buckets.len() >= self.max_keys_per_shard {
                slot = OVERFLOW_KEY;
            }
        }
        buckets
            .entry(slot)
            .or_insert_with(|| Bucket::full(rate, now))
            .take(rate, now)
    }

    /// Keys tracked now (for tests and the status page).
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const RATE: Rate = Rate {
        per_second: 2.0,
        burst: 3,
    };

    #[test]
    fn a_burst_passes_then_waits_for_refill() {
        let t0 = Instant::now();
        let mut bucket = Bucket::full(RATE, t0);
        for _ in 0..3 {
            assert_eq!(bucket.take(RATE, t0), Ok(()));
        }
        assert_eq!(bucket.take(RATE, t0), Err(1));
        // Half a second brings one token back (2 per second).
        assert_eq!(bucket.take(RATE, t0 + Duration::from_millis(500)), Ok(()));
        assert!(bucket.take(RATE, t0 + Duration::from_millis(500)).is_err());
        // A long idle period refills to the burst, not beyond.
        let later = t0 + Duration::from_secs(3600);
        assert!(bucket.is_full(RATE, later));
        for _ in 0..3 {
            assert_eq!(bucket.take(RATE, later), Ok(()));
        }
        assert!(bucket.take(RATE, later).is_err());
    }

    #[test]
    fn retry_after_counts_whole_seconds_until_a_token() {
        let slow = Rate {
            per_second: 1.0 / 60.0,
            burst: 1,
        };
        let t0 = Instant::now();
        let mut bucket = Bucket::full(slow, t0);
        assert_eq!(bucket.take(slow, t0), Ok(()));
        assert_eq!(bucket.take(slow, t0), Err(60));
        assert_eq!(bucket.take(slow, t0 + Duration::from_secs(30)), Err(30));
    }

    #[test]
    fn keys_have_their_own_buckets() {
        let table = BucketTable::new(RATE, 1000);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(table.take(b"a", t0).is_ok());
        }
        assert!(table.take(b"a", t0).is_err());
        assert!(table.take(b"b", t0).is_ok());
        assert_eq!(table.len(), 2);
    }

    #[test]
    fn the_table_stays_bounded_and_forgets_idle_keys() {
        let max = SHARDS * 4;
        let table = BucketTable::new(RATE, max);
        let t0 = Instant::now();
        for i in 0..10_000u32 {
            let _ = table.take(&i.to_be_bytes(), t0);
        }
        // One overflow bucket per shard at most on top of the bound.
        assert!(table.len() <= max + SHARDS, "{} keys", table.len());
        // Once the keys are idle (refilled), new ones replace them.
        let later = t0 + Duration::from_secs(10);
        for i in 20_000..20_000 + max as u32 {
            let _ = table.take(&i.to_be_bytes(), later);
        }
        assert!(table.len() <= max + SHARDS);
    }
}
