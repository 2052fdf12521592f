//! The node's paged prefix cache: prompt text cut into blocks of `block_tokens` tokens whose hashes
//! are chained (block i's hash covers blocks 0..=i), at most `capacity` blocks resident. A request
//! references its blocks while it runs; unreferenced blocks stay cached and are evicted least
//! recently used first when room is needed. Pure data, no clock: recency is a counter. Block
//! hashes live only in this process's memory, so std's fixed-key SipHash serves.

use std::collections::{BTreeMap, HashMap};
use std::hash::{DefaultHasher, Hasher};

use super::config::CHARS_PER_TOKEN;

/// Chained hashes of the prompt's full blocks (a trailing partial block is not cacheable).
pub fn block_hashes(prompt: &str, block_tokens: usize) -> Vec<u64> {
    let block_bytes = block_tokens.max(1) * CHARS_PER_TOKEN;
    let mut prev = 0u64;
    prompt
        .as_bytes()
        .chunks_exact(block_bytes)
        .map(|chunk| {
            let mut hasher = DefaultHasher::new();
            hasher.write_u64(prev);
            hasher.write(chunk);
            prev = hasher.finish();
            prev
        })
        .collect()
}

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
        for &hash in hashes {
            if let Some(block) = self.blocks.get_mut(&hash) {
                if block.refs == 0 {
                    self.evictable.remove(&block.released_at);
                }
                block.refs += 1;
            } else {
                if self.blocks.len() >= self.capacity && !self.evict_one() {
                    break;
                }
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
        Lease { hit_blocks, held }
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

    fn evict_one(&mut self) -> bool {
        match self.evictable.pop_first() {
            Some((_, hash)) => {
                self.blocks.remove(&hash);
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(blocks: usize, seed: char) -> String {
        // 16 tokens × 4 chars = 64 bytes per block.
        std::iter::repeat_n(seed, blocks * 64).collect()
    }

    #[test]
    fn hashes_are_chained_and_skip_the_partial_tail() {
        let a = block_hashes(&format!("{}{}", text(2, 'a'), "xyz"), 16);
        assert_eq!(a.len(), 2);
        // Same second block after a different first block: a different hash.
        let b = block_hashes(&format!("{}{}", text(1, 'b'), text(1, 'a')), 16);
        assert_ne!(a[1], b[1]);
        assert_eq!(a, block_hashes(&text(2, 'a'), 16));
        assert!(block_hashes("short", 16).is_empty());
    }

    #[test]
    fn second_identical_prompt_hits_every_block() {
        let mut cache = PrefixCache::new(100);
        let h = block_hashes(&text(5, 'a'), 16);
        let first = cache.acquire(&h);
        assert_eq!(first.hit_blocks, 0);
        assert_eq!(first.held.len(), 5);
        assert_eq!(cache.referenced(), 5);
        cache.release(&first.held);
        assert_eq!(cache.referenced(), 0);
        assert_eq!(cache.len(), 5);
        let second = cache.acquire(&h);
        assert_eq!(second.hit_blocks, 5);
        // A prompt sharing only the first two blocks hits two.
        let other = block_hashes(&format!("{}{}", text(2, 'a'), text(3, 'c')), 16);
        assert_eq!(cache.cached_prefix(&other), 2);
    }

    #[test]
    fn evicts_least_recently_released_and_never_exceeds_capacity() {
        let mut cache = PrefixCache::new(4);
        let a = block_hashes(&text(2, 'a'), 16);
        let b = block_hashes(&text(2, 'b'), 16);
        let c = block_hashes(&text(2, 'c'), 16);
        let la = cache.acquire(&a);
        cache.release(&la.held);
        let lb = cache.acquire(&b);
        cache.release(&lb.held);
        // Full: c evicts a (released first), b stays.
        let lc = cache.acquire(&c);
        assert_eq!(lc.held.len(), 2);
        assert!(cache.len() <= 4);
        assert_eq!(cache.cached_prefix(&a), 0);
        assert_eq!(cache.cached_prefix(&b), 2);
        cache.release(&lc.held);
        for round in 0..20 {
            let h = block_hashes(&text(3, char::from(b'd' + round)), 16);
            let l = cache.acquire(&h);
            assert!(cache.len() <= cache.capacity());
            cache.release(&l.held);
        }
    }

    #[test]
    fn tail_blocks_are_evicted_before_the_head() {
        let mut cache = PrefixCache::new(3);
        let a = block_hashes(&text(3, 'a'), 16);
        let la = cache.acquire(&a);
        cache.release(&la.held);
        let b = block_hashes(&text(1, 'b'), 16);
        let lb = cache.acquire(&b);
        assert_eq!(lb.held.len(), 1);
        // The head of `a` survives; only its last block went.
        assert_eq!(cache.cached_prefix(&a), 2);
    }

    #[test]
    fn referenced_blocks_are_never_evicted() {
        let mut cache = PrefixCache::new(3);
        let a = block_hashes(&text(3, 'a'), 16);
        let la = cache.acquire(&a);
        let b = block_hashes(&text(2, 'b'), 16);
        let lb = cache.acquire(&b);
        assert!(lb.held.is_empty());
        assert_eq!(cache.len(), 3);
        assert_eq!(cache.cached_prefix(&a), 3);
        cache.release(&la.held);
        let lb = cache.acquire(&b);
        assert_eq!(lb.held.len(), 2);
        assert_eq!(cache.len(), 3);
    }

    #[test]
    fn shared_blocks_count_references() {
        let mut cache = PrefixCache::new(10);
        let h = block_hashes(&text(2, 'a'), 16);
        let one = cache.acquire(&h);
        let two = cache.acquire(&h);
        cache.release(&one.held);
        assert_eq!(cache.referenced(), 2);
        cache.release(&two.held);
        assert_eq!(cache.referenced(), 0);
    }
}
