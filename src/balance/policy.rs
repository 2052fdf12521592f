//! Selection policies as pure functions over a candidate set: smooth weighted round robin,
//! least in-flight, power of two choices, and weighted rendezvous hashing. Callers filter the
//! candidates (healthy, not draining, not full, not yet tried) and supply randomness and state.

use super::hashing::{mix, stable_hash};

/// Weight units per configured weight point: slow start scales weights by a fraction, so the
/// effective weight keeps two decimal digits.
pub const WEIGHT_SCALE: u32 = 100;

/// One server the policy may choose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    /// Effective weight (configured weight × [`WEIGHT_SCALE`], reduced during slow start); ≥ 1.
    pub weight: u32,
    /// Requests outstanding on this server now.
    pub inflight: u32,
    /// The server's stable id (rendezvous hashing input).
    pub id: u64,
}

/// Smooth weighted round robin (nginx): every candidate's `current` grows by its weight, the
/// largest wins and pays back the total. `current[i]` belongs to `candidates[i]` and persists
/// between calls. Spreads picks evenly: weights 5,1,1 give `a a b a c a a`, never `a a a a a b c`.
pub fn smooth_weighted(candidates: &[Candidate], current: &mut [i64]) -> Option<usize> {
    if candidates.is_empty() || current.len() != candidates.len() {
        return None;
    }
    let mut total: i64 = 0;
    let mut best = 0;
    for (i, c) in candidates.iter().enumerate() {
        let weight = i64::from(c.weight);
        current[i] += weight;
        total += weight;
        if current[i] > current[best] {
            best = i;
        }
    }
    current[best] -= total;
    Some(best)
}

/// `a` carries less load per unit of weight than `b` (ties: false).
fn lighter(a: &Candidate, b: &Candidate) -> bool {
    // (a.inflight + 1) / a.weight < (b.inflight + 1) / b.weight, without division.
    let left = (u64::from(a.inflight) + 1) * u64::from(b.weight.max(1));
    let right = (u64::from(b.inflight) + 1) * u64::from(a.weight.max(1));
    left < right
}

/// The candidate with the fewest in-flight requests per unit of weight. Ties go to the first
/// tied candidate at or after `start` (pass a rotating or random value so ties spread).
pub fn least_inflight(candidates: &[Candidate], start: usize) -> Option<usize> {
    let n = candidates.len();
    if n == 0 {
        return None;
    }
    let mut best = start % n;
    for step in 1..n {
        let i = (start + step) % n;
        if lighter(&candidates[i], &candidates[best]) {
            best = i;
        }
    }
    Some(best)
}

/// Power of two choices: of the two candidates drawn by `r1` and `r2`, the lighter one.
pub fn p2c(candidates: &[Candidate], r1: usize, r2: usize) -> Option<usize> {
    let n = candidates.len();
    match n {
        0 => None,
        1 => Some(0),
        _ => {
            let a = r1 % n;
            // A second, distinct index.
            let b = (a + 1 + r2 % (n - 1)) % n;
            if lighter(&candidates[b], &candidates[a]) {
                Some(b)
            } else {
                Some(a)
            }
        }
    }
}

/// Weighted rendezvous (highest random weight) hashing: each candidate scores
/// `weight / -ln(u)` with `u` uniform in (0,1) from hash(key, id); the highest score wins.
/// Adding or removing one of N servers moves only the keys that server wins or held (≈ 1/N).
pub fn rendezvous(candidates: &[Candidate], key: &[u8]) -> Option<usize> {
    let key_hash = stable_hash(&[key]);
    let mut best: Option<(usize, f64)> = None;
    for (i, c) in candidates.iter().enumerate() {
        let h = mix(key_hash ^ c.id);
        // 53 random bits → (0, 1): never 0, never 1.
        let unit = ((h >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
        let score = f64::from(c.weight.max(1)) / -unit.ln();
        if best.is_none_or(|(_, s)| score > s) {
            best = Some((i, score));
        }
    }
    best.map(|(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cands(weights: &[u32]) -> Vec<Candidate> {
        weights
            .iter()
            .enumerate()
            .map(|(i, w)| Candidate {
                weight: *w,
                inflight: 0,
                id: stable_hash(&[b"test", &i.to_le_bytes()]),
            })
            .collect()
    }

    #[test]
    fn smooth_round_robin_interleaves_by_weight() {
        let c = cands(&[5, 1, 1]);
        let mut current = vec![0; 3];
        let picks: Vec<_> = (0..7)
            .filter_map(|_| smooth_weighted(&c, &mut current))
            .collect();
        assert_eq!(picks, vec![0, 0, 1, 0, 2, 0, 0]);
    }

    #[test]
    fn smooth_round_robin_honours_weights_exactly() {
        let c = cands(&[3, 2, 1]);
        let mut current = vec![0; 3];
        let mut counts = [0usize; 3];
        for _ in 0..600 {
            if let Some(i) = smooth_weighted(&c, &mut current) {
                counts[i] += 1;
            }
        }
        assert_eq!(counts, [300, 200, 100]);
        assert!(smooth_weighted(&[], &mut []).is_none());
    }

    #[test]
    fn equal_weights_alternate() {
        let c = cands(&[1, 1]);
        let mut current = vec![0; 2];
        let picks: Vec<_> = (0..4)
            .filter_map(|_| smooth_weighted(&c, &mut current))
            .collect();
        assert_eq!(picks, vec![0, 1, 0, 1]);
    }

    #[test]
    fn least_inflight_prefers_idle_and_weights() {
        let mut c = cands(&[1, 1, 1]);
        c[0].inflight = 3;
        c[1].inflight = 1;
        c[2].inflight = 2;
        assert_eq!(least_inflight(&c, 0), Some(1));
        // Weight 4 with 3 in flight is lighter than weight 1 with 1.
        let mut w = cands(&[4, 1]);
        w[0].inflight = 3;
        w[1].inflight = 1;
        assert_eq!(least_inflight(&w, 1), Some(0));
        // Ties rotate with `start`.
        let idle = cands(&[1, 1, 1]);
        assert_eq!(least_inflight(&idle, 0), Some(0));
        assert_eq!(least_inflight(&idle, 2), Some(2));
        assert_eq!(least_inflight(&[], 0), None);
    }

    #[test]
    fn p2c_takes_the_lighter_of_two_distinct() {
        let mut c = cands(&[1, 1, 1]);
        c[0].inflight = 5;
        c[1].inflight = 0;
        c[2].inflight = 9;
        assert_eq!(p2c(&c, 0, 0), Some(1)); // draws 0 and 1
        assert_eq!(p2c(&c, 2, 0), Some(0)); // draws 2 and 0
        assert_eq!(p2c(&c[..1], 7, 9), Some(0));
        for r1 in 0..10 {
            for r2 in 0..10 {
                let a = r1 % 3;
                let b = (a + 1 + r2 % 2) % 3;
                assert_ne!(a, b);
            }
        }
    }

    #[test]
    fn p2c_spreads_load_evenly() {
        let mut c = cands(&[1, 1, 1, 1]);
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..4000 {
            let i = p2c(&c, rng.usize(..), rng.usize(..)).expect("pick");
            c[i].inflight += 1;
        }
        for s in &c {
            assert!((950..=1050).contains(&s.inflight), "{c:?}");
        }
    }

    #[test]
    fn rendezvous_is_stable_and_weighted() {
        let c = cands(&[1, 1, 1, 1]);
        let mut counts = [0usize; 4];
        for k in 0..20_000u32 {
            let key = k.to_le_bytes();
            let i = rendezvous(&c, &key).expect("pick");
            assert_eq!(rendezvous(&c, &key), Some(i));
            counts[i] += 1;
        }
        for n in counts {
            assert!((4_500..=5_500).contains(&n), "{counts:?}");
        }
        let w = cands(&[3, 1]);
        let heavy = (0..20_000u32)
            .filter(|k| rendezvous(&w, &k.to_le_bytes()) == Some(0))
            .count();
        assert!((14_000..=16_000).contains(&heavy), "{heavy}");
    }

    #[test]
    fn adding_a_server_moves_about_one_nth_of_keys() {
        let four = cands(&[1, 1, 1, 1]);
        let five = cands(&[1, 1, 1, 1, 1]);
        let keys = 20_000u32;
        let mut moved = 0;
        for k in 0..keys {
            let before = rendezvous(&four, &k.to_le_bytes()).expect("pick");
            let after = rendezvous(&five, &k.to_le_bytes()).expect("pick");
            if before != after {
                // A key only ever moves to the new server.
                assert_eq!(after, 4);
                moved += 1;
            }
        }
        // Expected 1/5 = 4,000.
        assert!((3_500..=4_500).contains(&moved), "{moved}");
    }
}
