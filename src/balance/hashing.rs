//! Stable 64-bit hashing for server ids and rendezvous scores: FNV-1a over the bytes, finished
//! with the splitmix64 mixer. Stable across processes and versions (cookies name servers by it).

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// FNV-1a of `parts`, each followed by a 0xff separator so `("ab","c")` differs from `("a","bc")`.
pub fn stable_hash(parts: &[&[u8]]) -> u64 {
    let mut h = FNV_OFFSET;
    for part in parts {
        for byte in *part {
            h ^= u64::from(*byte);
            h = h.wrapping_mul(FNV_PRIME);
        }
        h ^= 0xff;
        h = h.wrapping_mul(FNV_PRIME);
    }
    mix(h)
}

/// The splitmix64 finalizer: spreads every input bit over the whole output.
pub fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_stable_and_separates_parts() {
        assert_eq!(stable_hash(&[b"a", b"b"]), stable_hash(&[b"a", b"b"]));
        assert_ne!(stable_hash(&[b"ab", b"c"]), stable_hash(&[b"a", b"bc"]));
        // Pinned: server ids in cookies must not change between versions.
        assert_eq!(
            stable_hash(&[b"owui", b"10.0.0.11:8080"]),
            0x2ccf_3e36_3441_4e36
        );
    }
}
