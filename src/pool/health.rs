//! One server's health as a pure state machine: active checks move it down after `fall` failures
//! and up after `rise` successes; passive observations (connect errors, 5xx) eject it after
//! `passive_fails` in a row for a backoff that doubles on each ejection; a recovered server ramps
//! its weight over `slow_start`. In-flight counts are not here: checks never touch them.

use std::time::{Duration, Instant};

use crate::config::model::Health;

/// Longest ejection: the base `eject` doubled at most this many times.
pub const MAX_EJECT_DOUBLINGS: u32 = 5;
/// Smallest weight fraction at the start of a slow-start ramp.
pub const SLOW_START_FLOOR: f64 = 0.1;

/// What a server is doing, as status reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Availability {
    Up,
    /// Failed active checks: waits for `rise` successes.
    Down,
    /// Ejected by passive observation until the backoff ends (or active checks bring it back).
    Ejected,
}

impl Availability {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Up => "up",
            Self::Down => "down",
            Self::Ejected => "ejected",
        }
    }
}

/// Health of one server.
#[derive(Debug, Clone)]
pub struct HealthState {
    /// The active-check verdict (true until checks say otherwise).
    checks_up: bool,
    ok_streak: u32,
    fail_streak: u32,
    passive_streak: u32,
    ejections: u32,
    ejected_until: Option<Instant>,
    /// When the server last became available again, for slow start.
    recovered_at: Option<Instant>,
    checks_done: u64,
}

impl Default for HealthState {
    fn default() -> Self {
        Self {
            checks_up: true,
            ok_streak: 0,
            fail_streak: 0,
            passive_streak: 0,
            ejections: 0,
            ejected_until: None,
            recovered_at: None,
            checks_done: 0,
        }
    }
}

impl HealthState {
    /// May receive new requests now.
    pub fn available(&self, now: Instant) -> bool {
        self.availability(now) == Availability::Up
    }

    pub fn availability(&self, now: Instant) -> Availability {
        if self.ejected_until.is_some_and(|until| now < until) {
            Availability::Ejected
        } else if !self.checks_up {
            Availability::Down
        } else {
            Availability::Up
        }
    }

    /// Active checks completed so far.
    pub fn checks_done(&self) -> u64 {
        self.checks_done
    }

    /// Records an active check result; returns true when the verdict changed.
    pub fn on_check(&mut self, ok: bool, policy: &Health, now: Instant) -> bool {
        self.checks_done += 1;
        let Some(active) = &policy.active else {
            return false;
        };
        if ok {
            self.ok_streak += 1;
            self.fail_streak = 0;
            if !self.checks_up && self.ok_streak >= active.rise {
                self.checks_up = true;
                self.ejected_until = None;
                self.passive_streak = 0;
                self.ejections = 0;
                self.recovered_at = Some(now);
                return true;
            }
        } else {
            self.fail_streak += 1;
            self.ok_streak = 0;
            if self.checks_up && self.fail_streak >= active.fall {
                self.checks_up = false;
                return true;
            }
        }
        false
    }

    /// Records a connect error or 5xx; returns true when this ejected the server.
    pub fn on_passive_failure(&mut self, policy: &Health, now: Instant) -> bool {
        if policy.passive_fails == 0 || !self.available(now) {
            return false;
        }
        self.passive_streak += 1;
        if self.passive_streak < policy.passive_fails {
            return false;
        }
        let backoff = policy.eject * 2u32.pow(self.ejections.min(MAX_EJECT_DOUBLINGS));
        self.ejections += 1;
        let until = now + backoff;
        self.ejected_until = Some(until);
        // One more failure after the backoff ejects again (half-open), a success clears it.
        self.passive_streak = policy.passive_fails.saturating_sub(1);
        if policy.active.is_some() {
            // Active checks decide the return: `rise` successes, not the clock.
            self.checks_up = false;
            self.ok_streak = 0;
            self.ejected_until = None;
        } else {
            self.recovered_at = Some(until);
        }
        true
    }

    /// Records a good response.
    pub fn on_passive_success(&mut self) {
        self.passive_streak = 0;
        self.ejections = 0;
    }

    /// The fraction of its weight a server gets now: ramps from [`SLOW_START_FLOOR`] to 1 over
    /// `slow_start` after a recovery; 1 without slow start or recovery.
    pub fn weight_factor(&self, slow_start: Option<Duration>, now: Instant) -> f64 {
        let (Some(ramp), Some(since)) = (slow_start, self.recovered_at) else {
            return 1.0;
        };
        if ramp.is_zero() || now <= since {
            return if ramp.is_zero() {
                1.0
            } else {
                SLOW_START_FLOOR
            };
        }
        let fraction = (now - since).as_secs_f64() / ramp.as_secs_f64();
        fraction.clamp(SLOW_START_FLOOR, 1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::model::ActiveHealth;

    fn policy(active: bool) -> Health {
        Health {
            active: active.then(|| ActiveHealth {
                path: "/health".into(),
                interval: Duration::from_secs(1),
                timeout: Duration::from_secs(1),
                rise: 2,
                fall: 3,
                expect_status: None,
            }),
            passive_fails: 2,
            eject: Duration::from_secs(10),
            slow_start: Some(Duration::from_secs(20)),
        }
    }

    #[test]
    fn active_checks_fall_and_rise() {
        let p = policy(true);
        let t = Instant::now();
        let mut s = HealthState::default();
        assert!(s.available(t));
        assert!(!s.on_check(false, &p, t));
        assert!(!s.on_check(false, &p, t));
        assert!(s.on_check(false, &p, t));
        assert_eq!(s.availability(t), Availability::Down);
        assert!(!s.on_check(true, &p, t));
        assert!(!s.available(t));
        assert!(s.on_check(true, &p, t));
        assert!(s.available(t));
        assert_eq!(s.checks_done(), 5);
    }

    #[test]
    fn passive_ejection_backs_off_and_half_opens() {
        let p = policy(false);
        let t = Instant::now();
        let mut s = HealthState::default();
        assert!(!s.on_passive_failure(&p, t));
        assert!(s.on_passive_failure(&p, t));
        assert_eq!(s.availability(t), Availability::Ejected);
        assert!(!s.on_passive_failure(&p, t)); // already out
        let back = t + Duration::from_secs(10);
        assert!(s.available(back));
        // One failure after the backoff ejects again, for twice as long.
        assert!(s.on_passive_failure(&p, back));
        assert!(!s.available(back + Duration::from_secs(19)));
        assert!(s.available(back + Duration::from_secs(20)));
        s.on_passive_success();
        assert!(!s.on_passive_failure(&p, back + Duration::from_secs(20)));
    }

    #[test]
    fn with_active_checks_an_ejected_server_needs_rise() {
        let p = policy(true);
        let t = Instant::now();
        let mut s = HealthState::default();
        s.on_passive_failure(&p, t);
        assert!(s.on_passive_failure(&p, t));
        assert_eq!(s.availability(t), Availability::Down);
        assert!(!s.available(t + Duration::from_secs(3600)));
        s.on_check(true, &p, t);
        assert!(s.on_check(true, &p, t));
        assert!(s.available(t));
    }

    #[test]
    fn slow_start_ramps_after_recovery_only() {
        let p = policy(true);
        let t = Instant::now();
        let mut s = HealthState::default();
        assert_eq!(s.weight_factor(p.slow_start, t), 1.0);
        for _ in 0..3 {
            s.on_check(false, &p, t);
        }
        s.on_check(true, &p, t);
        s.on_check(true, &p, t);
        assert_eq!(s.weight_factor(p.slow_start, t), SLOW_START_FLOOR);
        let half = s.weight_factor(p.slow_start, t + Duration::from_secs(10));
        assert!((half - 0.5).abs() < 1e-9, "{half}");
        assert_eq!(
            s.weight_factor(p.slow_start, t + Duration::from_secs(30)),
            1.0
        );
        assert_eq!(s.weight_factor(None, t), 1.0);
    }
}
