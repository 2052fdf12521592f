//! The node's paged prefix cache: blocks named by their chained hashes (block i's hash covers
//! blocks 0..=i, see [`super::block_hash`]), at most `capacity` blocks resident. A request
//! references its blocks while it runs; unreferenced blocks stay cached and are evicted least
//! recently used first when room is needed. Every change is reported back (blocks newly stored,
//! blocks evicted) for the KV event stream. Pure data, no clock: recency is a counter.

use std::collections::{BTreeMap, HashMap};

#[derive(Debug)]
struct Block {
    refs: u32,
    /// Key in `evictable` while `refs == 0`.
    released_at: u64,
}

/// What [`PrefixCache::acquire`] found and holds for one request.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Lease {
    /// Leading blocks that were already cached.
    pub hit_blocks: usize,
    /// Blocks referenced by the request (a prefix of its hashes), to hand back to
    /// [`PrefixCache::release`].
    pub held: Vec<u64>,
    /// Indices (into the request's hashes) of the blocks this request stored, ascending.
    pub stored: Vec<usize>,
    /// Blocks evicted to make room, in eviction order.
    pub evicted: Vec<u64>,
}

/// Resident blocks with reference counts and an LRU order of the unreferenced ones.
#[derive(Debug)]
pub struct PrefixCache {
    capacity: usize,
    blocks: HashMap<u64, Block>,
    /// Unreferenced blocks by release order (oldest first).
    evictable: BTreeMap<u64, u64>,
    clock: u64,
}

impl PrefixCache {
    pub fn new(capacity: usize) -> Self {
        PrefixCache {
            capacity,
            blocks: HashMap::new(),
            evictable: BTreeMap::new(),
            clock: 0,
        }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Blocks resident (referenced or not).
    pub fn len(&self) -> usize {
        self.blocks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.blocks.is_empty()
    }

    /// Blocks referenced by running requests (what KV cache usage counts).
    pub fn referenced(&self) -> usize {
        self.blocks.len() - self.evictable.len()
    }

    /// Leading blocks of `hashes` already resident.
    pub fn cached_prefix(&self, hashes: &[u64]) -> usize {
        hashes
            .iter()
            .take_while(|h| self.blocks.contains_key(h))
            .count()
    }

    /// Counts the cached prefix, then references every block of `hashes` in order, inserting
    /// missing ones and evicting unreferenced blocks when full. Stops at the first block that finds
    /// no room (a later block without its predecessors could never be hit).
    pub fn acquire(&mut self, hashes: &[u64]) -> Lease {
        let hit_blocks = self.cached_prefix(hashes);
        let mut held = Vec::with_capacity(hashes.len());
        let mut stored = Vec::new();
        let mut evicted = Vec::new();
        for (index, &hash) in hashes.iter().enumerate() {
            if let Some(block) = self.blocks.get_mut(&hash) {
                if block.refs == 0 {
                    self.evictable.remove(&block.released_at);
                }
                block.refs += 1;
            } else {
                if self.blocks.len() >= self.capacity {
                    match self.evict_one() {
                        Some(gone) => evicted.push(gone),
                        None => break,
                    }
                }
                stored.push(index);
                self.blocks.insert(
                    hash,
                    Block {
                        refs: 1,
                        released_at: 0,
                    },
                );
            }
            held.push(hash);
        }
        Lease {
            hit_blocks,
            held,
            stored,
            evicted,
        }
    }

    /// Drops one reference to each held block. The tail is released first, so it is evicted
    /// before the head that other prompts are likelier to share.
    pub fn release(&mut self, held: &[u64]) {
        for hash in held.iter().rev() {
            let Some(block) = self.blocks.get_mut(hash) else {
                continue;
            };
            block.refs = block.refs.saturating_sub(1);
            if block.refs == 0 {
                self.clock += 1;
                block.released_at = self.clock;
                self.evictable.insert(self.clock, *hash);
            }
        }
    }

    fn evict_one(&mut self) -> Option<u64> {
        let (_, hash) = self.evictable.pop_first()?;
        self.blocks.remove(&hash);
        Some(hash)
    }

    /// Drops every block (vLLM's `reset_prefix_cache`), unless a running request references
    /// some: then nothing changes and `false` comes back.
    pub fn clear(&mut self) -> bool {
        if self.referenced() > 0 {
            return false;
        }
        self.blocks.clear();
        self.evictable.clear();
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hashes of a chain of `blocks` blocks named after `seed` (distinct per seed and index).
    fn chain(blocks: usize, seed: u64) -> Vec<u64> {
        (0..blocks as u64).map(|i| seed * 1_000 + i).collect()
    }

    #[test]
    fn second_identical_prompt_hits_every_block() {
        let mut cache = PrefixCache::new(100);
        let h = chain(5, 1);
        let first = cache.acquire(&h);
        assert_eq!(first.hit_blocks, 0);
        assert_eq!(first.held.len(), 5);
        assert_eq!(first.stored, vec![0, 1, 2, 3, 4]);
        assert!(first.evicted.is_empty());
        assert_eq!(cache.referenced(), 5);
        cache.release(&first.held);
        assert_eq!(cache.referenced(), 0);
        assert_eq!(cache.len(), 5);
        let second = cache.acquire(&h);
        assert_eq!(second.hit_blocks, 5);
        assert!(second.stored.is_empty());
        // A prompt sharing only the first two blocks hits two and stores the rest.
        let mut other = h[..2].to_vec();
        other.extend(chain(3, 2));
        assert_eq!(cache.cached_prefix(&other), 2);
        assert_eq!(cache.acquire(&other).stored, vec![2, 3, 4]);
    }

    #[test]
    fn evicts_least_recently_released_and_never_exceeds_capacity() {
        let mut cache = PrefixCache::new(4);
        let (a, b, c) = (chain(2, 1), chain(2, 2), chain(2, 3));
        let la = cache.acquire(&a);
        cache.release(&la.held);
        let lb = cache.acquire(&b);
        cache.release(&lb.held);
        // Full: c evicts a (released first, tail before head), b stays.
        let lc = cache.acquire(&c);
        assert_eq!(lc.held.len(), 2);
        assert_eq!(lc.evicted, vec![a[1], a[0]]);
        assert!(cache.len() <= 4);
        assert_eq!(cache.cached_prefix(&a), 0);
        assert_eq!(cache.cached_prefix(&b), 2);
        cache.release(&lc.held);
        for round in 0..20 {
            let l = cache.acquire(&chain(3, 10 + round));
            assert!(cache.len() <= cache.capacity());
            cache.release(&l.held);
        }
    }

    #[test]
    fn tail_blocks_are_evicted_before_the_head() {
        let mut cache = PrefixCache::new(3);
        let a = chain(3, 1);
        let la = cache.acquire(&a);
        cache.release(&la.held);
        let lb = cache.acquire(&chain(1, 2));
        assert_eq!(lb.held.len(), 1);
        assert_eq!(lb.evicted, vec![a[2]]);
        // The head of `a` survives; only its last block went.
        assert_eq!(cache.cached_prefix(&a), 2);
    }

    #[test]
    fn referenced_blocks_are_never_evicted() {
        let mut cache = PrefixCache::new(3);
        let a = chain(3, 1);
        let la = cache.acquire(&a);
        let b = chain(2, 2);
        let lb = cache.acquire(&b);
        assert!(lb.held.is_empty() && lb.stored.is_empty() && lb.evicted.is_empty());
        assert_eq!(cache.len(), 3);
        assert_eq!(cache.cached_prefix(&a), 3);
        assert!(!cache.clear(), "no reset while blocks are in use");
        cache.release(&la.held);
        let lb = cache.acquire(&b);
        assert_eq!(lb.held.len(), 2);
        assert_eq!(cache.len(), 3);
        cache.release(&lb.held);
        assert!(cache.clear());
        assert!(cache.is_empty());
    }

    #[test]
    fn shared_blocks_count_references() {
        let mut cache = PrefixCache::new(10);
        let h = chain(2, 1);
        let one = cache.acquire(&h);
        let two = cache.acquire(&h);
        cache.release(&one.held);
        assert_eq!(cache.referenced(), 2);
        cache.release(&two.held);
        assert_eq!(cache.referenced(), 0);
    }
}
