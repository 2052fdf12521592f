//! Two cumulative readings into one interval's value, as pure functions: a counter's rate or
//! growth (`None` when it went down: a reset, or a series that vanished), a ratio of two
//! counters' growth, and quantiles of a histogram from the growth of its buckets (Prometheus's
//! `histogram_quantile` over the interval). An interval without observations has no quantile.

use std::time::Duration;

/// How much a cumulative count grew; `None` when it went down or is not a number.
pub fn growth(before: f64, now: f64) -> Option<f64> {
    let delta = now - before;
    (delta.is_finite() && delta >= 0.0).then_some(delta)
}

/// Growth per second over `elapsed`; `None` for a reset or an empty interval of time.
pub fn rate(before: f64, now: f64, elapsed: Duration) -> Option<f64> {
    let seconds = elapsed.as_secs_f64();
    if seconds <= 0.0 {
        return None;
    }
    growth(before, now).map(|delta| delta / seconds)
}

/// `part`'s growth over `whole`'s growth (e.g. prefix-cache hit tokens over query tokens),
/// within 0..=1; `None` when `whole` did not grow or either went down.
pub fn ratio(part: (f64, f64), whole: (f64, f64)) -> Option<f64> {
    let part = growth(part.0, part.1)?;
    let whole = growth(whole.0, whole.1)?;
    (whole > 0.0).then(|| (part / whole).clamp(0.0, 1.0))
}

/// A histogram's cumulative bucket counts at one moment: `(upper bound, count ≤ bound)` for the
/// finite bounds in increasing order, and the count of every observation (the `+Inf` bucket).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Buckets {
    pub bounds: Vec<(f64, u64)>,
    pub count: u64,
}

impl Buckets {
    /// Adds another child of the same family (same bounds) into this one; a child with other
    /// bounds is left out and `false` returned.
    pub fn merge(&mut self, other: &Buckets) -> bool {
        if self.bounds.is_empty() && self.count == 0 {
            *self = other.clone();
            return true;
        }
        let same = self.bounds.len() == other.bounds.len()
            && self
                .bounds
                .iter()
                .zip(&other.bounds)
                .all(|(a, b)| a.0 == b.0);
        if !same {
            return false;
        }
        for (mine, theirs) in self.bounds.iter_mut().zip(&other.bounds) {
            mine.1 = mine.1.saturating_add(theirs.1);
        }
        self.count = self.count.saturating_add(other.count);
        true
    }

    /// The observations made between `before` and `self`; `None` when a bucket went down or
    /// the bounds differ.
    pub fn since(&self, before: &Buckets) -> Option<Buckets> {
        if before.bounds.is_empty() && before.count == 0 {
            return Some(self.clone());
        }
        if self.bounds.len() != before.bounds.len() {
            return None;
        }
        let mut bounds = Vec::with_capacity(self.bounds.len());
        for (now, then) in self.bounds.iter().zip(&before.bounds) {
            if now.0 != then.0 {
                return None;
            }
            bounds.push((now.0, now.1.checked_sub(then.1)?));
        }
        let count = self.count.checked_sub(before.count)?;
        Some(Buckets { bounds, count })
    }

    /// The `q` quantile (0..=1) of the observations, interpolated linearly inside the bucket it
    /// falls in (from 0 for the first bucket); the largest finite bound when it falls above
    /// every bound; `None` without observations.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.count == 0 || !(0.0..=1.0).contains(&q) {
            return None;
        }
        let rank = q * self.count as f64;
        let mut lower = (0.0, 0u64);
        for &(bound, cumulative) in &self.bounds {
            if cumulative as f64 >= rank && cumulative > lower.1 {
                let inside = (cumulative - lower.1) as f64;
                let fraction = (rank - lower.1 as f64) / inside;
                return Some(lower.0 + (bound - lower.0) * fraction.clamp(0.0, 1.0));
            }
            lower = (bound, cumulative);
        }
        self.bounds.last().map(|&(bound, _)| bound)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn buckets(cumulative: &[u64], count: u64) -> Buckets {
        let bounds = [0.1, 0.5, 1.0];
        Buckets {
            bounds: bounds
                .iter()
                .copied()
                .zip(cumulative.iter().copied())
                .collect(),
            count,
        }
    }

    #[test]
    fn rates_and_resets() {
        let second = Duration::from_secs(2);
        assert_eq!(rate(10.0, 30.0, second), Some(10.0));
        assert_eq!(
            rate(10.0, 10.0, second),
            Some(0.0),
            "an idle interval is 0, not a gap"
        );
        assert_eq!(rate(30.0, 5.0, second), None, "a reset is a gap");
        assert_eq!(rate(1.0, 2.0, Duration::ZERO), None);
        assert_eq!(rate(1.0, f64::NAN, second), None);
        assert_eq!(growth(3.0, 7.0), Some(4.0));
    }

    #[test]
    fn ratios_need_a_growing_whole() {
        assert_eq!(ratio((10.0, 40.0), (100.0, 200.0)), Some(0.3));
        assert_eq!(
            ratio((10.0, 40.0), (100.0, 100.0)),
            None,
            "no queries, no rate"
        );
        assert_eq!(ratio((40.0, 10.0), (100.0, 200.0)), None);
        assert_eq!(ratio((0.0, 500.0), (0.0, 100.0)), Some(1.0), "clamped");
    }

    #[test]
    fn quantiles_come_from_bucket_growth() {
        let before = buckets(&[5, 5, 5], 5);
        // 10 new observations: 2 ≤ 0.1, 6 in (0.1, 0.5], 2 in (0.5, 1.0].
        let now = buckets(&[7, 13, 15], 15);
        let interval = now.since(&before).expect("grew");
        assert_eq!(interval.count, 10);
        assert_eq!(interval.bounds[1], (0.5, 8));
        // rank 5 falls 3/6 into (0.1, 0.5].
        let p50 = interval.quantile(0.5).expect("p50");
        assert!((p50 - 0.3).abs() < 1e-9, "{p50}");
        // rank 9.9 falls 1.9/2 into (0.5, 1.0].
        let p99 = interval.quantile(0.99).expect("p99");
        assert!((p99 - 0.975).abs() < 1e-9, "{p99}");
        // rank 1 falls half into [0, 0.1].
        let p10 = interval.quantile(0.1).expect("p10");
        assert!((p10 - 0.05).abs() < 1e-9, "{p10}");
    }

    #[test]
    fn empty_intervals_and_overflow_and_resets() {
        let same = buckets(&[5, 5, 5], 5);
        let interval = same.since(&same).expect("no change");
        assert_eq!(
            interval.quantile(0.5),
            None,
            "nothing observed, no quantile"
        );
        // Everything above the largest bound: the largest bound is the answer.
        let slow = buckets(&[0, 0, 0], 4)
            .since(&Buckets::default())
            .expect("first");
        assert_eq!(slow.quantile(0.5), Some(1.0));
        // A bucket that went down is a reset: no interval.
        assert_eq!(buckets(&[1, 1, 1], 1).since(&same), None);
        assert_eq!(buckets(&[5, 5, 5], 4).since(&same), None);
        let other_bounds = Buckets {
            bounds: vec![(0.2, 9)],
            count: 9,
        };
        assert_eq!(other_bounds.since(&same), None);
        assert_eq!(same.quantile(1.5), None);
    }

    #[test]
    fn children_merge_when_their_bounds_match() {
        let mut total = Buckets::default();
        assert!(total.merge(&buckets(&[1, 2, 3], 4)));
        assert!(total.merge(&buckets(&[1, 1, 1], 1)));
        assert_eq!(total, buckets(&[2, 3, 4], 5));
        assert!(!total.merge(&Buckets {
            bounds: vec![(7.0, 1)],
            count: 1
        }));
        assert_eq!(total.count, 5);
    }
}
