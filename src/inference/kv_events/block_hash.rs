//! An engine's prefix-cache block hashes for a prompt's token ids, as vLLM computes them with
//! `--prefix-caching-hash-algo sha256_cbor`: each full block of `block_size` tokens is hashed
//! with its parent's hash as `sha256(canonical_cbor([parent, [tokens…], null]))`, the first
//! block's parent being `sha256(canonical_cbor(PYTHONHASHSEED))`; the events carry each digest's
//! last eight bytes read big-endian. (vLLM's default `sha256` hashes a Python pickle, which no
//! other program reproduces: exact routing needs the engine to run with `sha256_cbor` and a
//! fixed `PYTHONHASHSEED`.)

use ciborium::Value;
use ring::digest::{digest, SHA256};

/// `PYTHONHASHSEED` assumed unless configured.
pub const DEFAULT_HASH_SEED: &str = "0";

type Digest = [u8; 32];

fn cbor(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    // Writing into a Vec does not fail.
    if ciborium::into_writer(value, &mut out).is_err() {
        out.clear();
    }
    out
}

fn sha256(bytes: &[u8]) -> Digest {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest(&SHA256, bytes).as_ref());
    out
}

/// The first block's parent for a seed.
pub fn none_hash(seed: &str) -> Digest {
    sha256(&cbor(&Value::Text(seed.to_string())))
}

/// Chained hashes (the published 64-bit form) of the full blocks of `tokens`.
pub fn block_hashes(seed: &str, tokens: &[u32], block_size: usize) -> Vec<u64> {
    let mut parent = none_hash(seed);
    tokens
        .chunks_exact(block_size.max(1))
        .map(|block| {
            let encoded = cbor(&Value::Array(vec![
                Value::Bytes(parent.to_vec()),
                Value::Array(
                    block
                        .iter()
                        .map(|t| Value::Integer(u64::from(*t).into()))
                        .collect(),
                ),
                Value::Null,
            ]));
            parent = sha256(&encoded);
            let mut tail = [0u8; 8];
            tail.copy_from_slice(&parent[24..]);
            u64::from_be_bytes(tail)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_published_vector() {
        // Computed with cbor2 (canonical) and hashlib, seed "0", tokens 0..16.
        let none = none_hash("0");
        assert_eq!(none[0], 0x4e);
        assert_eq!(none[31], 0x3e);
        let tokens: Vec<u32> = (0..40).collect();
        let hashes = block_hashes("0", &tokens, 16);
        assert_eq!(hashes.len(), 2, "the partial tail is not hashed");
        assert_eq!(hashes[0], 12_687_895_063_098_490_012);
        assert_ne!(block_hashes("1", &tokens, 16)[0], hashes[0]);
    }
}
