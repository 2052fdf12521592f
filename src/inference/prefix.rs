//! Approximate prefix index for `cache_aware`: the normalized prompt is cut into fixed-size
//! character blocks whose hashes are chained (block i's hash covers blocks 0..=i), so a hit at
//! depth i implies the whole prefix matched. Each (block hash, server) pair remembers when it was
//! last routed; the index holds at most `capacity` pairs and evicts the least recently used.

use std::collections::{BTreeMap, HashMap};

use crate::balance::hashing::stable_hash;

/// Characters per block (~64 tokens of English text).
pub const BLOCK_CHARS: usize = 256;
/// Most blocks considered per prompt (bounds work per request).
pub const MAX_BLOCKS: usize = 512;

/// Collapses whitespace runs to one space, so formatting differences do not break prefix hits.
pub fn normalize(prompt: &str) -> String {
    prompt.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Chained block hashes (stable across processes) of a normalized prompt (a trailing partial block is ignored: engines
/// cache whole blocks only).
pub fn block_hashes(normalized: &str) -> Vec<u64> {
    let chars: Vec<char> = normalized.chars().collect();
    let mut out = Vec::new();
    let mut prev = 0u64;
    let mut buf = String::with_capacity(BLOCK_CHARS * 4);
    for chunk in chars.chunks_exact(BLOCK_CHARS).take(MAX_BLOCKS) {
        buf.clear();
        buf.extend(chunk.iter());
        prev = stable_hash(&[&prev.to_le_bytes(), buf.as_bytes()]);
        out.push(prev);
    }
    out
}

/// The index: which server was last sent which prefix block.
#[derive(Debug)]
pub struct PrefixIndex {
    capacity: usize,
    tick: u64,
    entries: HashMap<(u64, u64), u64>,
    lru: BTreeMap<u64, (u64, u64)>,
}

impl PrefixIndex {
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            tick: 0,
            entries: HashMap::new(),
            lru: BTreeMap::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// How many leading blocks of `hashes` the index believes `server` holds.
    pub fn matched(&self, hashes: &[u64], server: u64) -> usize {
        hashes
            .iter()
            .take_while(|h| self.entries.contains_key(&(**h, server)))
            .count()
    }

    /// Records that `hashes` were sent to `server`, evicting the oldest pairs past capacity.
    pub fn insert(&mut self, hashes: &[u64], server: u64) {
        for h in hashes {
            self.tick += 1;
            if let Some(old) = self.entries.insert((*h, server), self.tick) {
                self.lru.remove(&old);
            }
            self.lru.insert(self.tick, (*h, server));
        }
        while self.entries.len() > self.capacity {
            match self.lru.pop_first() {
                Some((_, key)) => {
                    self.entries.remove(&key);
                }
                None => break,
            }
        }
    }

    /// Forgets everything about a server (removed from the pool).
    pub fn remove_server(&mut self, server: u64) {
        self.entries.retain(|(_, s), _| *s != server);
        self.lru.retain(|_, (_, s)| *s != server);
    }
}

/// Cost model weights: seconds of predicted queue wait per in-flight request, and seconds of
/// prefill per uncached block.
#[derive(Debug, Clone, Copy)]
pub struct CostModel {
    pub wait_per_request: f64,
    pub prefill_per_block: f64,
    /// Load bound factor: a server above `factor × mean load` is skipped (hot prefixes spill).
    pub balance_factor: f64,
}

impl Default for CostModel {
    fn default() -> Self {
        Self {
            wait_per_request: 0.05,
            prefill_per_block: 0.02,
            balance_factor: 1.25,
        }
    }
}

/// One eligible server as the policy sees it.
#[derive(Debug, Clone, Copy)]
pub struct Candidate {
    /// The server's stable id.
    pub server: u64,
    /// Requests ahead of this one on the server (router in-flight, blended with scraped queue).
    pub load: f64,
}

/// Picks the cheapest candidate: cost = load × wait + uncached blocks × prefill, among those
/// whose load after this request stays within `balance_factor × mean` (at least
/// [`super::affinity::MIN_SLACK`] over the mean, so a light pool keeps prefixes home).
/// Ties go to the lower load, then the earlier candidate. Returns (server, matched blocks).
pub fn choose(
    index: &PrefixIndex,
    hashes: &[u64],
    candidates: &[Candidate],
    cost: &CostModel,
) -> Option<(u64, usize)> {
    if candidates.is_empty() {
        return None;
    }
    let total: f64 = candidates.iter().map(|c| c.load).sum::<f64>() + 1.0;
    let mean = total / candidates.len() as f64;
    let bound = (mean * cost.balance_factor).max(mean + super::affinity::MIN_SLACK);
    let mut best: Option<(f64, f64, u64, usize)> = None;
    for c in candidates {
        if c.load + 1.0 > bound {
            continue;
        }
        let matched = index.matched(hashes, c.server);
        let uncached = hashes.len() - matched;
        let score = c.load * cost.wait_per_request + uncached as f64 * cost.prefill_per_block;
        let better = match best {
            None => true,
            Some((s, load, _, _)) => score < s || (score == s && c.load < load),
        };
        if better {
            best = Some((score, c.load, c.server, matched));
        }
    }
    best.map(|(_, _, server, matched)| (server, matched))
        .or_else(|| {
            candidates
                .iter()
                .min_by(|a, b| a.load.total_cmp(&b.load))
                .map(|c| (c.server, index.matched(hashes, c.server)))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prompt(tenant: char, blocks: usize) -> Vec<u64> {
        block_hashes(&normalize(&tenant.to_string().repeat(BLOCK_CHARS * blocks)))
    }

    fn idle(n: usize) -> Vec<Candidate> {
        (0..n as u64)
            .map(|server| Candidate { server, load: 0.0 })
            .collect()
    }

    #[test]
    fn hashes_are_chained_and_normalized() {
        let a = block_hashes(&normalize(&"x ".repeat(BLOCK_CHARS)));
        let b = block_hashes(&normalize(&"x   \n".repeat(BLOCK_CHARS)));
        assert_eq!(a, b);
        assert_eq!(a.len(), 1);
        let long = block_hashes(&"ab".repeat(BLOCK_CHARS * 2));
        assert_eq!(long.len(), 4);
        assert_ne!(
            long[0], long[2],
            "same block text at different depth hashes differently"
        );
        assert!(block_hashes("short").is_empty());
    }

    #[test]
    fn hit_and_miss() {
        let mut idx = PrefixIndex::new(100);
        let a = prompt('a', 4);
        idx.insert(&a, 2);
        assert_eq!(idx.matched(&a, 2), 4);
        assert_eq!(idx.matched(&a, 1), 0);
        assert_eq!(idx.matched(&prompt('b', 4), 2), 0);
        assert_eq!(idx.matched(&a[..2], 2), 2);
        assert_eq!(
            choose(&idx, &a, &idle(3), &CostModel::default()),
            Some((2, 4))
        );
        // A miss everywhere goes to the first least-loaded server.
        assert_eq!(
            choose(&idx, &prompt('c', 2), &idle(3), &CostModel::default()),
            Some((0, 0))
        );
    }

    #[test]
    fn eviction_is_bounded_and_lru() {
        let mut idx = PrefixIndex::new(6);
        let a = prompt('a', 4);
        let b = prompt('b', 4);
        idx.insert(&a, 0);
        idx.insert(&b, 1);
        assert_eq!(idx.len(), 6);
        assert_eq!(idx.matched(&a, 0), 0, "a's first blocks were the oldest");
        assert_eq!(idx.matched(&b, 1), 4);
        for i in 0..50 {
            idx.insert(&prompt('c', 3), i % 4);
            assert!(idx.len() <= 6);
        }
        idx.remove_server(3);
        assert!(idx.entries.keys().all(|(_, s)| *s != 3));
        assert_eq!(idx.entries.len(), idx.lru.len());
    }

    #[test]
    fn hot_prefix_spills_past_bound() {
        let mut idx = PrefixIndex::new(1000);
        let hot = prompt('h', 8);
        idx.insert(&hot, 0);
        let cost = CostModel::default();
        // Holder is moderately loaded: the cache hit still wins.
        let c = [
            Candidate {
                server: 0,
                load: 1.0,
            },
            Candidate {
                server: 1,
                load: 1.0,
            },
            Candidate {
                server: 2,
                load: 0.0,
            },
        ];
        assert_eq!(choose(&idx, &hot, &c, &cost).map(|x| x.0), Some(0));
        // Holder far above 1.25 × mean: spill to the least-cost other server.
        let c = [
            Candidate {
                server: 0,
                load: 9.0,
            },
            Candidate {
                server: 1,
                load: 2.0,
            },
            Candidate {
                server: 2,
                load: 1.0,
            },
        ];
        assert_eq!(choose(&idx, &hot, &c, &cost), Some((2, 0)));
    }

    #[test]
    fn load_outweighs_tiny_prefix() {
        let mut idx = PrefixIndex::new(100);
        let p = prompt('p', 1);
        idx.insert(&p, 0);
        let c = [
            Candidate {
                server: 0,
                load: 3.0,
            },
            Candidate {
                server: 1,
                load: 2.0,
            },
        ];
        // 3×0.05 = 0.15 vs 2×0.05 + 0.02 = 0.12.
        assert_eq!(choose(&idx, &p, &c, &CostModel::default()), Some((1, 0)));
        assert_eq!(choose(&idx, &p, &[], &CostModel::default()), None);
    }
}
