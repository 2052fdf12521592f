//! Selection policies as pure functions over a candidate set: smooth weighted round robin,
//! least in-flight, power of two choices, and weighted rendezvous hashing. Callers filter the
//! candidates (healthy, not draining, not full, not yet tried) and supply randomness and state.

use std::cmp::Ordering;

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

/// Compares load per unit of weight: in-flight / weight, without division.
fn load_cmp(a: &Candidate, b: &Candidate) -> Ordering {
    let left = u64::from(a.inflight) * u64::from(b.weight.max(1));
    let right = u64::from(b.inflight) * u64::from(a.weight.max(1));
    left.cmp(&right)
}

/// The index `ticket` lands on when the weights of `indices` are laid end to end: a weighted
/// choice when `ticket` is random, a weighted rotation when it counts up.
fn weighted_pick(candidates: &[Candidate], indices: &[usize], ticket: u64) -> Option<usize> {
    let total: u64 = indices
        .iter()
        .map(|i| u64::from(candidates[*i].weight.max(1)))
        .sum();
    if total == 0 {
        return None;
    }
    let mut ticket = ticket % total;
    for i in indices {
        let weight = u64::from(candidates[*i].weight.max(1));
        if ticket < weight {
            return Some(*i);
        }
        ticket -= weight;
    }
    None
}

/// The candidate with the fewest in-flight requests per unit of weight (nginx `least_conn`).
/// Equally loaded candidates (all idle, typically) share by weight: `ticket` walks their weights,
/// so pass a counter that goes up by one per request.
pub fn least_inflight(candidates: &[Candidate], ticket: u64) -> Option<usize> {
    let best = candidates.iter().min_by(|a, b| load_cmp(a, b))?;
    let tied: Vec<usize> = candidates
        .iter()
        .enumerate()
        .filter(|(_, c)| load_cmp(c, best) == Ordering::Equal)
        .map(|(i, _)| i)
        .collect();
    weighted_pick(candidates, &tied, ticket)
}

/// Power of two choices: two distinct candidates drawn by weight (with the random `r1`, `r2`),
/// the less loaded per unit of weight wins; at equal load the first drawn.
pub fn p2c(candidates: &[Candidate], r1: u64, r2: u64) -> Option<usize> {
    let all: Vec<usize> = (0..candidates.len()).collect();
    let first = weighted_pick(candidates, &all, r1)?;
    let rest: Vec<usize> = all.into_iter().filter(|i| *i != first).collect();
    let Some(second) = weighted_pick(candidates, &rest, r2) else {
        return Some(first);
    };
    if load_cmp(&candidates[second], &candidates[first]) == Ordering::Less {
        Some(second)
    } else {
        Some(first)
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
        // Weight 4 with 3 in flight (0.75 each) is lighter than weight 1 with 1.
        let mut w = cands(&[4, 1]);
        w[0].inflight = 3;
        w[1].inflight = 1;
        assert_eq!(least_inflight(&w, 1), Some(0));
        // Ties rotate with the ticket.
        let idle = cands(&[1, 1, 1]);
        assert_eq!(least_inflight(&idle, 0), Some(0));
        assert_eq!(least_inflight(&idle, 2), Some(2));
        assert_eq!(least_inflight(&[], 0), None);
    }

    #[test]
    fn idle_servers_share_by_weight() {
        let c = cands(&[3, 1]);
        let heavy = (0..4000u64)
            .filter(|t| least_inflight(&c, *t) == Some(0))
            .count();
        assert_eq!(heavy, 3000);
        let mut rng = fastrand::Rng::with_seed(11);
        let heavy = (0..4000)
            .filter(|_| p2c(&c, rng.u64(..), rng.u64(..)) == Some(0))
            .count();
        assert!((2850..=3150).contains(&heavy), "{heavy}");
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
        assert_eq!(p2c(&[], 7, 9), None);
    }

    #[test]
    fn p2c_spreads_load_evenly() {
        let mut c = cands(&[1, 1, 1, 1]);
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..4000 {
            let i = p2c(&c, rng.u64(..), rng.u64(..)).expect("pick");
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
