//! When to renew and when to retry: pure functions over times (Unix seconds) and counts, so the
//! manager's timing is tested here without a clock.

use std::hash::BuildHasher;
use std::time::Duration;

/// At most this much jitter is taken off a renewal time, so many certificates issued together do
/// not all renew in the same second.
pub const MAX_RENEWAL_JITTER: Duration = Duration::from_secs(3600);

/// A random number in `0..bound` (0 when `bound` is 0), from the process's hash seed: good
/// enough for spreading timers, not for secrets.
pub fn random_below(bound: u64) -> u64 {
    if bound == 0 {
        return 0;
    }
    let seed = std::collections::hash_map::RandomState::new().hash_one(std::time::Instant::now());
    seed % bound
}

/// The renewal point of a certificate valid from `not_before` to `not_after`: when a third of
/// its lifetime remains, minus `jitter` seconds (at most 1 % of the lifetime and an hour).
pub fn renewal_time(not_before: i64, not_after: i64, jitter: u64) -> i64 {
    let lifetime = (not_after - not_before).max(0);
    let max_jitter = (lifetime / 100).min(MAX_RENEWAL_JITTER.as_secs() as i64);
    let jitter = (jitter as i64).min(max_jitter);
    not_after - lifetime / 3 - jitter
}

/// A point inside the CA's ARI window `[start, end]`: `offset` picks it (taken modulo the
/// window's length); a window that already started means now.
pub fn ari_renewal_time(start: i64, end: i64, now: i64, offset: u64) -> i64 {
    if end <= start {
        return start.max(now).min(end.max(now));
    }
    let point = start + (offset % (end - start) as u64) as i64;
    if start <= now {
        now
    } else {
        point
    }
}

/// The wait before retry number `failures` (1 = after the first failure): `min` doubling each
/// time, capped at `max`.
pub fn backoff(failures: u32, min: Duration, max: Duration) -> Duration {
    let exponent = failures.saturating_sub(1).min(30);
    min.saturating_mul(1u32 << exponent).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400;

    #[test]
    fn renews_when_a_third_of_the_lifetime_remains() {
        // A 90-day certificate renews 30 days before it expires.
        assert_eq!(renewal_time(0, 90 * DAY, 0), 60 * DAY);
        // Jitter moves it earlier, by at most an hour here.
        assert_eq!(renewal_time(0, 90 * DAY, 600), 60 * DAY - 600);
        assert_eq!(renewal_time(0, 90 * DAY, 10 * DAY as u64), 60 * DAY - 3600);
        // Short lifetimes keep jitter within 1 %.
        assert_eq!(renewal_time(0, 300, 1000), 200 - 3);
        // A certificate whose dates are backwards is due at once.
        assert!(renewal_time(100, 50, 0) <= 50);
    }

    #[test]
    fn ari_window_picks_a_point_inside_or_now() {
        assert_eq!(ari_renewal_time(1000, 2000, 0, 250), 1250);
        assert_eq!(ari_renewal_time(1000, 2000, 0, 1250), 1250);
        // Started already: renew now.
        assert_eq!(ari_renewal_time(1000, 2000, 1500, 7), 1500);
        assert_eq!(ari_renewal_time(1000, 2000, 5000, 7), 5000);
        // A degenerate window is its start.
        assert_eq!(ari_renewal_time(1000, 1000, 0, 9), 1000);
    }

    #[test]
    fn backoff_doubles_from_min_to_max() {
        let (min, max) = (Duration::from_secs(60), Duration::from_secs(6 * 3600));
        let waits: Vec<u64> = (1..=10).map(|n| backoff(n, min, max).as_secs()).collect();
        assert_eq!(
            waits,
            [60, 120, 240, 480, 960, 1920, 3840, 7680, 15360, 21600]
        );
        assert_eq!(backoff(0, min, max), min);
        assert_eq!(backoff(u32::MAX, min, max), max);
    }

    #[test]
    fn random_below_stays_below() {
        assert_eq!(random_below(0), 0);
        assert!((0..100).all(|_| random_below(7) < 7));
    }
}
