//! The approximate prefix model behind `cache_aware`, without a tokenizer: the normalized prompt
//! is cut into fixed-size character blocks whose hashes are chained (block i's hash covers
//! blocks 0..=i), so a hit at depth i implies the whole prefix matched. [`index`] remembers
//! which server holds which block within each server's modelled cache; [`cost`] prices a
//! request on each server; [`spread`] tracks how many servers carry each hot prefix.

pub mod cost;
pub mod index;
pub mod spread;

pub use cost::{choose, Cost, Decision, NodeView};
pub use index::PrefixIndex;
pub use spread::{PrefixSpread, Spread, SpreadSummary};

use crate::balance::hashing::stable_hash;

/// What `cache_aware` keeps per upstream: the index of blocks per server and the spread of
/// prefixes over servers (one lock: a decision reads both).
#[derive(Debug, Default)]
pub struct PrefixModel {
    pub index: PrefixIndex,
    pub spread: Spread,
}

/// Characters per block (~64 tokens of English text).
pub const BLOCK_CHARS: usize = 256;
/// Characters per token assumed when a prompt's tokens are estimated from its text.
pub const CHARS_PER_TOKEN: usize = 4;
/// Tokens one block stands for.
pub const TOKENS_PER_BLOCK: f64 = (BLOCK_CHARS / CHARS_PER_TOKEN) as f64;
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

/// The prompt tokens of a normalized prompt of `chars` characters, estimated.
pub fn estimate_tokens(chars: usize) -> f64 {
    (chars as f64 / CHARS_PER_TOKEN as f64).ceil()
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(estimate_tokens(1_001), 251.0);
    }
}
