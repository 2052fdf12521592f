//! The approximate index behind `cache_aware`: for each server, the prefix blocks it was sent,
//! in the order its engine would evict them, never more than the server's modelled cache holds.
//! An engine keeps the head of a prompt longest (it releases a request's blocks tail first and
//! evicts the least recently released), so a routed prompt's blocks are stamped tail oldest.
//! The modelled size starts at what the engine reports (vLLM `cache_config_info`) or a default,
//! and is reconciled with the engine's own prefix-cache counters: when the server hits less
//! than the index predicted, its modelled cache shrinks (forgetting its oldest blocks); when it
//! hits more, it grows back toward the reported size.

use std::collections::{BTreeMap, HashMap};

use super::TOKENS_PER_BLOCK;

/// Blocks modelled for a server whose cache size is unknown (about a million tokens).
pub const DEFAULT_SERVER_BLOCKS: usize = 16_384;
/// Most blocks modelled for one server (memory bound: about 100 bytes each).
pub const MAX_SERVER_BLOCKS: usize = 262_144;
/// Fewest blocks a server's model shrinks to.
const MIN_SERVER_BLOCKS: usize = 16;
/// Query tokens both the prediction and the server's counters must have seen before their hit
/// rates are compared.
pub const RECONCILE_MIN_TOKENS: f64 = 40_000.0;
/// Hit-rate difference tolerated without a correction.
const RATE_TOLERANCE: f64 = 0.03;
/// Largest shrink and growth of one correction.
const MAX_SHRINK: f64 = 0.7;
const GROWTH: f64 = 1.1;

/// Predicted and reported prefix-cache tokens since the last correction.
#[derive(Debug, Default, Clone, Copy)]
struct Window {
    predicted_hits: f64,
    predicted_queries: f64,
    reported_hits: f64,
    reported_queries: f64,
}

/// What the index holds for one server.
#[derive(Debug)]
struct ServerCache {
    /// Modelled size in blocks.
    capacity: usize,
    /// What the engine reports it can hold, in blocks, when known.
    ceiling: Option<usize>,
    blocks: HashMap<u64, u64>,
    /// Stamp → block, oldest first: the eviction order.
    lru: BTreeMap<u64, u64>,
    window: Window,
}

impl ServerCache {
    fn new() -> Self {
        Self {
            capacity: DEFAULT_SERVER_BLOCKS,
            ceiling: None,
            blocks: HashMap::new(),
            lru: BTreeMap::new(),
            window: Window::default(),
        }
    }

    fn evict_to_capacity(&mut self) {
        while self.blocks.len() > self.capacity {
            match self.lru.pop_first() {
                Some((_, hash)) => {
                    self.blocks.remove(&hash);
                }
                None => break,
            }
        }
    }
}

/// A correction the reconciliation made to a server's modelled size.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Correction {
    pub predicted_rate: f64,
    pub reported_rate: f64,
    pub capacity_blocks: usize,
}

/// The index: which server holds which prefix block, per server.
#[derive(Debug, Default)]
pub struct PrefixIndex {
    tick: u64,
    servers: HashMap<u64, ServerCache>,
}

impl PrefixIndex {
    pub fn new() -> Self {
        Self::default()
    }

    /// Blocks held over all servers.
    pub fn len(&self) -> usize {
        self.servers.values().map(|s| s.blocks.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Blocks held for `server`.
    pub fn len_of(&self, server: u64) -> usize {
        self.servers.get(&server).map_or(0, |s| s.blocks.len())
    }

    /// The modelled cache size of `server`, in blocks.
    pub fn capacity(&self, server: u64) -> usize {
        self.servers
            .get(&server)
            .map_or(DEFAULT_SERVER_BLOCKS, |s| s.capacity)
    }

    /// How full the modelled cache of `server` is, 0..1.
    pub fn fill(&self, server: u64) -> f64 {
        self.servers
            .get(&server)
            .map_or(0.0, |s| s.blocks.len() as f64 / s.capacity.max(1) as f64)
    }

    /// How many leading blocks of `hashes` the index believes `server` holds.
    pub fn matched(&self, hashes: &[u64], server: u64) -> usize {
        let Some(cache) = self.servers.get(&server) else {
            return 0;
        };
        hashes
            .iter()
            .take_while(|h| cache.blocks.contains_key(h))
            .count()
    }

    /// Records that `hashes` were sent to `server` (its engine now holds them, the head
    /// longest), forgetting what no longer fits.
    pub fn insert(&mut self, hashes: &[u64], server: u64) {
        let cache = self.servers.entry(server).or_insert_with(ServerCache::new);
        for hash in hashes.iter().rev() {
            self.tick += 1;
            if let Some(old) = cache.blocks.insert(*hash, self.tick) {
                cache.lru.remove(&old);
            }
            cache.lru.insert(self.tick, *hash);
        }
        cache.evict_to_capacity();
    }

    /// Sets the size the engine reports for `server` (`None`: unknown). A model still at the
    /// default takes it; a larger model is cut to it.
    pub fn set_ceiling(&mut self, server: u64, blocks: Option<usize>) {
        let cache = self.servers.entry(server).or_insert_with(ServerCache::new);
        let blocks = blocks.map(|b| b.clamp(MIN_SERVER_BLOCKS, MAX_SERVER_BLOCKS));
        if cache.ceiling == blocks {
            return;
        }
        if let Some(ceiling) = blocks {
            if cache.ceiling.is_none() || cache.capacity > ceiling {
                cache.capacity = ceiling;
            }
        }
        cache.ceiling = blocks;
        cache.evict_to_capacity();
    }

    /// Sets the modelled size of `server` directly (configured sizes, tests).
    pub fn set_capacity(&mut self, server: u64, blocks: usize) {
        let cache = self.servers.entry(server).or_insert_with(ServerCache::new);
        cache.capacity = blocks.clamp(MIN_SERVER_BLOCKS, MAX_SERVER_BLOCKS);
        cache.evict_to_capacity();
    }

    /// Counts what a routing decision predicted: `hit_tokens` of `query_tokens` cached.
    pub fn predicted(&mut self, server: u64, hit_tokens: f64, query_tokens: f64) {
        let cache = self.servers.entry(server).or_insert_with(ServerCache::new);
        cache.window.predicted_hits += hit_tokens.max(0.0);
        cache.window.predicted_queries += query_tokens.max(0.0);
    }

    /// Compares what the server reported since its last reading (`hits` of `queries` tokens)
    /// with what the index predicted; once both saw enough, corrects the modelled size.
    pub fn reconcile(&mut self, server: u64, hits: f64, queries: f64) -> Option<Correction> {
        let cache = self.servers.get_mut(&server)?;
        let w = &mut cache.window;
        w.reported_hits += hits.max(0.0);
        w.reported_queries += queries.max(0.0);
        if w.reported_queries < RECONCILE_MIN_TOKENS || w.predicted_queries < RECONCILE_MIN_TOKENS {
            return None;
        }
        let predicted = (w.predicted_hits / w.predicted_queries).clamp(0.0, 1.0);
        let reported = (w.reported_hits / w.reported_queries).clamp(0.0, 1.0);
        *w = Window::default();
        let factor = if reported + RATE_TOLERANCE < predicted {
            (reported / predicted).clamp(MAX_SHRINK, 1.0 - RATE_TOLERANCE)
        } else if reported > predicted + RATE_TOLERANCE {
            GROWTH
        } else {
            return None;
        };
        let ceiling = cache.ceiling.unwrap_or(MAX_SERVER_BLOCKS);
        let resized = ((cache.capacity as f64 * factor).round() as usize)
            .clamp(MIN_SERVER_BLOCKS, ceiling.max(MIN_SERVER_BLOCKS));
        cache.capacity = resized;
        cache.evict_to_capacity();
        Some(Correction {
            predicted_rate: predicted,
            reported_rate: reported,
            capacity_blocks: resized,
        })
    }

    /// Forgets what `server` holds (its engine restarted or cleared its cache); keeps its size.
    pub fn clear_server(&mut self, server: u64) {
        if let Some(cache) = self.servers.get_mut(&server) {
            cache.blocks.clear();
            cache.lru.clear();
            cache.window = Window::default();
        }
    }

    /// Forgets every server not in `keep` (removed from the pool).
    pub fn retain_servers(&mut self, keep: &[u64]) {
        self.servers.retain(|server, _| keep.contains(server));
    }

    /// (held, modelled) tokens of `server`.
    pub fn tokens_of(&self, server: u64) -> (f64, f64) {
        (
            self.len_of(server) as f64 * TOKENS_PER_BLOCK,
            self.capacity(server) as f64 * TOKENS_PER_BLOCK,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::super::{block_hashes, normalize, BLOCK_CHARS};
    use super::*;

    fn prompt(tenant: char, blocks: usize) -> Vec<u64> {
        block_hashes(&normalize(&tenant.to_string().repeat(BLOCK_CHARS * blocks)))
    }

    #[test]
    fn hit_and_miss_per_server() {
        let mut idx = PrefixIndex::new();
        let a = prompt('a', 4);
        idx.insert(&a, 2);
        assert_eq!(idx.matched(&a, 2), 4);
        assert_eq!(idx.matched(&a, 1), 0);
        assert_eq!(idx.matched(&prompt('b', 4), 2), 0);
        assert_eq!(idx.matched(&a[..2], 2), 2);
        assert_eq!(idx.len(), 4);
    }

    #[test]
    fn eviction_makes_the_index_forget_tail_first() {
        let mut idx = PrefixIndex::new();
        idx.set_capacity(0, 16);
        let a = prompt('a', 10);
        let b = prompt('b', 10);
        idx.insert(&a, 0);
        idx.insert(&b, 0);
        assert_eq!(idx.len_of(0), 16);
        // a was sent first: four of its blocks went, its tail first, so its head still hits.
        assert_eq!(idx.matched(&a, 0), 6);
        assert_eq!(idx.matched(&b, 0), 10);
        // Another server's blocks are bounded by its own size, not this one's.
        idx.insert(&prompt('c', 12), 1);
        assert_eq!(idx.matched(&b, 0), 10);
        // A smaller reported size forgets at once.
        idx.set_ceiling(0, Some(16));
        idx.set_capacity(0, 16);
        idx.insert(&prompt('d', 16), 0);
        assert_eq!(idx.matched(&a, 0), 0);
        assert_eq!(idx.matched(&b, 0), 0);
        idx.clear_server(1);
        assert_eq!(idx.len_of(1), 0);
        idx.retain_servers(&[1]);
        assert_eq!(idx.len_of(0), 0);
    }

    #[test]
    fn a_reported_size_caps_the_model() {
        let mut idx = PrefixIndex::new();
        idx.set_ceiling(3, Some(100));
        assert_eq!(idx.capacity(3), 100);
        idx.set_capacity(3, 60);
        idx.set_ceiling(3, Some(80));
        assert_eq!(idx.capacity(3), 60, "a smaller learned size stays");
        idx.set_ceiling(3, Some(40));
        assert_eq!(idx.capacity(3), 40);
    }

    /// A server's real cache: the same tail-first LRU with its true size.
    struct Engine {
        inner: PrefixIndex,
    }

    impl Engine {
        fn new(blocks: usize) -> Self {
            let mut inner = PrefixIndex::new();
            inner.set_capacity(0, blocks);
            Self { inner }
        }

        /// Serves a prompt: the hit blocks, then caches it.
        fn serve(&mut self, hashes: &[u64]) -> usize {
            let hit = self.inner.matched(hashes, 0);
            self.inner.insert(hashes, 0);
            hit
        }
    }

    #[test]
    fn reconciliation_converges_on_the_real_capacity() {
        let real = 400;
        let mut engine = Engine::new(real);
        let mut idx = PrefixIndex::new();
        idx.set_ceiling(0, Some(4 * real));
        let tenants: Vec<Vec<u64>> = (0..40u8)
            .map(|t| prompt(char::from(b'A' + t), 20))
            .collect();
        let mut rng = fastrand::Rng::with_seed(3);
        let mut sizes = Vec::new();
        for _round in 0..400 {
            let (mut hits, mut queries) = (0.0, 0.0);
            for _ in 0..40 {
                // A skewed mix: some tenants far more often than others.
                let t = (rng.f64().powi(2) * tenants.len() as f64) as usize;
                let hashes = &tenants[t];
                let predicted = idx.matched(hashes, 0);
                idx.predicted(
                    0,
                    predicted as f64 * TOKENS_PER_BLOCK,
                    hashes.len() as f64 * TOKENS_PER_BLOCK,
                );
                idx.insert(hashes, 0);
                hits += engine.serve(hashes) as f64 * TOKENS_PER_BLOCK;
                queries += hashes.len() as f64 * TOKENS_PER_BLOCK;
            }
            idx.reconcile(0, hits, queries);
            sizes.push(idx.capacity(0));
        }
        let tail = &sizes[sizes.len() - 100..];
        let mean = tail.iter().sum::<usize>() as f64 / tail.len() as f64;
        assert!(
            (mean - real as f64).abs() < 0.2 * real as f64,
            "modelled {mean:.0} blocks vs real {real}: {:?}",
            &sizes[..40]
        );
        assert!(idx.capacity(0) < 2 * real);
    }
}
