//! Server selection policies as pure functions over a candidate set (weighted round robin for now).

use std::sync::atomic::{AtomicUsize, Ordering};

/// Weighted round robin: a shared counter walks the cumulative weights, so a server of weight 2 is
/// picked twice as often as one of weight 1.
#[derive(Debug, Default)]
pub struct RoundRobin {
    next: AtomicUsize,
}

impl RoundRobin {
    /// Picks an index into `weights`; `None` when there is no server or every weight is 0.
    pub fn pick(&self, weights: &[u32]) -> Option<usize> {
        let total: u64 = weights.iter().map(|w| u64::from(*w)).sum();
        if total == 0 {
            return None;
        }
        let ticket = (self.next.fetch_add(1, Ordering::Relaxed) as u64) % total;
        pick_by_ticket(weights, ticket)
    }
}

/// The index whose cumulative weight range holds `ticket`.
fn pick_by_ticket(weights: &[u32], mut ticket: u64) -> Option<usize> {
    for (i, w) in weights.iter().enumerate() {
        let w = u64::from(*w);
        if ticket < w {
            return Some(i);
        }
        ticket -= w;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alternates_between_equal_servers() {
        let rr = RoundRobin::default();
        let picks: Vec<_> = (0..4).filter_map(|_| rr.pick(&[1, 1])).collect();
        assert_eq!(picks, vec![0, 1, 0, 1]);
    }

    #[test]
    fn honours_weights() {
        let rr = RoundRobin::default();
        let mut counts = [0usize; 2];
        for _ in 0..300 {
            if let Some(i) = rr.pick(&[2, 1]) {
                counts[i] += 1;
            }
        }
        assert_eq!(counts, [200, 100]);
    }

    #[test]
    fn empty_or_zero_weights_pick_nothing() {
        let rr = RoundRobin::default();
        assert_eq!(rr.pick(&[]), None);
        assert_eq!(rr.pick(&[0, 0]), None);
    }
}
