//! When to renew and when to retry: pure functions over times (Unix seconds), counts and
//! errors, so the manager's timing is tested here without a clock.

use std::hash::BuildHasher;
use std::time::Duration;

use super::AcmeError;

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

/// The wait after failed attempt number `failures`. A transient failure waits the exponential
/// [`backoff`], or until the time the CA named (`ca_wait`) when that is later, never past `max`;
/// a permanent one (retrying cannot fix it) waits `max` at once.
pub fn retry_delay(
    failures: u32,
    transient: bool,
    ca_wait: Option<Duration>,
    min: Duration,
    max: Duration,
) -> Duration {
    if !transient {
        return max;
    }
    let delay = backoff(failures, min, max);
    ca_wait.map_or(delay, |wait| delay.max(wait).min(max))
}

/// [`retry_delay`] for an issuance that failed with `error` at `now` (Unix seconds).
pub fn retry_wait(
    error: &AcmeError,
    failures: u32,
    min: Duration,
    max: Duration,
    now: i64,
) -> Duration {
    let ca_wait = error
        .retry_after()
        .map(|at| Duration::from_secs(at.saturating_sub(now).max(0) as u64));
    retry_delay(failures, error.is_transient(), ca_wait, min, max)
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
    fn permanent_failures_wait_the_longest_at_once() {
        let (min, max) = (Duration::from_secs(60), Duration::from_secs(6 * 3600));
        assert_eq!(retry_delay(1, true, None, min, max), min);
        assert_eq!(retry_delay(3, true, None, min, max), min * 4);
        assert_eq!(retry_delay(1, false, None, min, max), max);
        assert_eq!(retry_delay(7, false, None, min, max), max);
        // The CA's own time stretches a short backoff, within `max`; it never shortens one.
        let hour = Duration::from_secs(3600);
        assert_eq!(retry_delay(1, true, Some(hour), min, max), hour);
        assert_eq!(retry_delay(1, true, Some(max * 10), min, max), max);
        assert_eq!(
            retry_delay(5, true, Some(Duration::ZERO), min, max),
            min * 16
        );
    }

    #[test]
    fn the_error_chooses_the_wait() {
        use crate::acme::CaStep;
        let (min, max) = (Duration::from_secs(1), Duration::from_secs(4));
        let problem = |kind: &str, detail: &str| {
            let problem: instant_acme::Problem = serde_json::from_value(serde_json::json!({
                "type": format!("urn:ietf:params:acme:error:{kind}"),
                "detail": detail,
            }))
            .expect("problem");
            instant_acme::Error::Api(problem)
        };
        let unreachable = AcmeError::from_ca(
            CaStep::Directory("https://127.0.0.1:1/dir".into()),
            instant_acme::Error::Other("connection refused".into()),
        );
        assert_eq!(retry_wait(&unreachable, 1, min, max, 0), min);
        assert_eq!(retry_wait(&unreachable, 2, min, max, 0), min * 2);
        let rejected = AcmeError::from_ca(CaStep::NewOrder, problem("rejectedIdentifier", "no"));
        assert_eq!(retry_wait(&rejected, 1, min, max, 0), max);
        let limited = AcmeError::from_ca(
            CaStep::NewOrder,
            problem("rateLimited", "retry after 1970-01-01 00:00:03 UTC: see"),
        );
        assert_eq!(retry_wait(&limited, 1, min, max, 0), Duration::from_secs(3));
        // Already past the CA's time: the plain backoff.
        assert_eq!(retry_wait(&limited, 1, min, max, 10), min);
    }

    #[test]
    fn random_below_stays_below() {
        assert_eq!(random_below(0), 0);
        assert!((0..100).all(|_| random_below(7) < 7));
    }
}
