//! A timer an HTTP/1 connection makes once and moves later for each of its requests.
//!
//! Moving a registered tokio timer later is one atomic store: the driver files it again when
//! the old time comes. A tokio timer made per request, due before every other on the worker,
//! made the runtime wake its own I/O driver (an eventfd write and an extra `epoll_wait` turn),
//! and pingora's shared coarse timer (`pingora::time::sleep`) costs a lock, a map lookup and two
//! clock reads each time. A deadline earlier than the one registered, or after the timer fired,
//! registers it again (a connection idle for a while, not one under load).

use std::pin::Pin;
use std::time::Duration;

use tokio::time::{Instant, Sleep};

/// One reusable deadline; made inside the runtime (it holds the runtime's handle).
pub struct ConnTimer(Pin<Box<Sleep>>);

impl Default for ConnTimer {
    fn default() -> Self {
        // Registered with the runtime's timer on first use, not here.
        Self(Box::pin(tokio::time::sleep(Duration::ZERO)))
    }
}

impl ConnTimer {
    /// Waits until `deadline`; the timer moves there.
    pub async fn until(&mut self, deadline: Instant) {
        self.0.as_mut().reset(deadline);
        self.0.as_mut().await;
    }

    /// Waits `delay` from now.
    pub async fn after(&mut self, delay: Duration) {
        self.until(Instant::now() + delay).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The runtime's timer counts whole milliseconds, rounding a deadline up.
    fn assert_at(elapsed: Duration, expected: Duration) {
        assert!(
            elapsed >= expected && elapsed <= expected + Duration::from_millis(1),
            "{elapsed:?} for {expected:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn moves_later_and_earlier_and_fires_again() {
        let mut timer = ConnTimer::default();
        let start = Instant::now();
        timer.after(Duration::from_millis(50)).await;
        assert_at(start.elapsed(), Duration::from_millis(50));
        // After it fired: a later deadline registers it again.
        timer.until(start + Duration::from_secs(2)).await;
        assert_at(start.elapsed(), Duration::from_secs(2));
        // A minute away, given up after 10 ms; then moved earlier than that minute.
        let waited = Instant::now();
        let minute = Duration::from_secs(60);
        let given_up = tokio::time::timeout(Duration::from_millis(10), timer.after(minute)).await;
        assert!(given_up.is_err(), "a minute's wait ended within 10 ms");
        timer.after(Duration::from_millis(5)).await;
        assert_at(waited.elapsed(), Duration::from_millis(15));
    }

    #[tokio::test(start_paused = true)]
    async fn moved_later_before_its_time_it_waits_for_the_new_time() {
        let mut timer = ConnTimer::default();
        let start = Instant::now();
        let second = Duration::from_secs(1);
        let given_up = tokio::time::timeout(Duration::from_millis(10), timer.after(second)).await;
        assert!(given_up.is_err());
        // Extended past the first deadline (1 s) while still registered for it.
        timer.after(second).await;
        assert_at(start.elapsed(), Duration::from_millis(1010));
    }
}
