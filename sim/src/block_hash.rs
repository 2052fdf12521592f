//! vLLM's prefix-caching block hash with `--prefix-caching-hash-algo sha256_cbor`: each full
//! block of `block_size` token ids is hashed together with its parent block's hash, as
//! `sha256(canonical_cbor([parent, [token ids…], null]))`, the first block's parent being
//! `NONE_HASH = sha256(canonical_cbor(PYTHONHASHSEED))`. vLLM publishes (and this node keys its
//! cache by) the low 64 bits of each 32-byte digest: its last eight bytes read big-endian
//! (`VLLM_KV_EVENTS_USE_INT_BLOCK_HASHES`, on by default).

use ciborium::Value;
use ring::digest::{digest, SHA256};

/// `PYTHONHASHSEED` the node hashes with unless told otherwise.
pub const DEFAULT_HASH_SEED: &str = "0";

/// A block's full digest.
pub type Digest = [u8; 32];

/// Canonical CBOR of `value` (definite lengths, shortest integer forms: ciborium's only
/// encoding).
fn cbor(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    // Writing into a Vec cannot fail; an empty encoding would only ever be a bug.
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

/// vLLM's `NONE_HASH` for a `PYTHONHASHSEED` value.
pub fn none_hash(seed: &str) -> Digest {
    sha256(&cbor(&Value::Text(seed.to_string())))
}

/// The CBOR bytes hashed for one block (vLLM's `(parent, tuple(tokens), extra_keys)` with no
/// extra keys).
pub fn block_cbor(parent: &Digest, tokens: &[u32]) -> Vec<u8> {
    cbor(&Value::Array(vec![
        Value::Bytes(parent.to_vec()),
        Value::Array(
            tokens
                .iter()
                .map(|&t| Value::Integer(u64::from(t).into()))
                .collect(),
        ),
        Value::Null,
    ]))
}

/// One block's digest.
pub fn block_digest(parent: &Digest, tokens: &[u32]) -> Digest {
    sha256(&block_cbor(parent, tokens))
}

/// The 64-bit form vLLM publishes: the digest's last eight bytes, big-endian.
pub fn external(digest: &Digest) -> u64 {
    let mut tail = [0u8; 8];
    tail.copy_from_slice(&digest[24..]);
    u64::from_be_bytes(tail)
}

/// Chained hashes (64-bit form) of the full blocks of `tokens`; a trailing partial block is not
/// hashed.
pub fn block_hashes(none_hash: &Digest, tokens: &[u32], block_size: usize) -> Vec<u64> {
    let mut parent = *none_hash;
    tokens
        .chunks_exact(block_size.max(1))
        .map(|block| {
            parent = block_digest(&parent, block);
            external(&parent)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Computed with cbor2 6.3 (`canonical=True`) and hashlib, vLLM's own `sha256_cbor` and
    /// `hash_block_tokens` steps, `PYTHONHASHSEED=0`, tokens 0..16.
    const NONE_HASH_SEED_0: &str =
        "4e1195df020de59e0d65a33a4279f1183e7ae4e5d980e309f8b55adff2e61c3e";
    const BLOCK_0_CBOR: &str = "8358204e1195df020de59e0d65a33a4279f1183e7ae4e5d980e309f8b55adff2\
                                e61c3e90000102030405060708090a0b0c0d0e0ff6";
    const BLOCK_0_DIGEST: &str = "d830de3d42c00f25a2949b5d12d98642664a44872c1614c5b0147556276afc9c";
    const BLOCK_0_PUBLISHED: u64 = 12_687_895_063_098_490_012;

    #[test]
    fn matches_vllm_sha256_cbor_vector() {
        let none = none_hash("0");
        assert_eq!(hex(&none), NONE_HASH_SEED_0);
        let tokens: Vec<u32> = (0..16).collect();
        assert_eq!(hex(&block_cbor(&none, &tokens)), BLOCK_0_CBOR);
        let d = block_digest(&none, &tokens);
        assert_eq!(hex(&d), BLOCK_0_DIGEST);
        assert_eq!(external(&d), BLOCK_0_PUBLISHED);
        assert_eq!(block_hashes(&none, &tokens, 16), vec![BLOCK_0_PUBLISHED]);
    }

    #[test]
    fn integers_take_their_shortest_cbor_form() {
        let none = [0u8; 32];
        let bytes = block_cbor(&none, &[23, 24, 255, 256, 65_535, 65_536, 100_002]);
        let tail = &bytes[3 + 32..];
        assert_eq!(
            hex(tail),
            "87\
             17\
             1818\
             18ff\
             190100\
             19ffff\
             1a00010000\
             1a000186a2\
             f6"
        );
        // Arrays longer than 23 use the one-byte length form.
        let long = block_cbor(&none, &[0; 24]);
        assert_eq!(&long[35..37], &[0x98, 24]);
    }

    #[test]
    fn hashes_chain_and_skip_the_partial_tail() {
        let none = none_hash(DEFAULT_HASH_SEED);
        let a: Vec<u32> = (0..40).collect();
        let h = block_hashes(&none, &a, 16);
        assert_eq!(h.len(), 2);
        // The same second block after a different first block hashes differently.
        let mut b = a.clone();
        b[0] = 99;
        let hb = block_hashes(&none, &b, 16);
        assert_ne!(h[0], hb[0]);
        assert_ne!(h[1], hb[1]);
        // Another seed, other hashes.
        assert_ne!(block_hashes(&none_hash("1"), &a, 16), h);
    }
}
