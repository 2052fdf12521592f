//! What an inference server says about itself, kept per server across reloads: the models its
//! `GET /v1/models` listed and the load its `/metrics` reported (queue, running, KV-cache use),
//! each stamped with when it was read so stale readings fade out of balancing decisions.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// One scrape of a server's metrics, normalized across engines.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Load {
    /// Requests waiting in the engine's queue.
    pub waiting: f64,
    /// Requests being generated.
    pub running: f64,
    /// KV-cache use, 0..1, when the engine reports it.
    pub kv_usage: Option<f64>,
    /// Cumulative prefix-cache hit tokens, when reported.
    pub prefix_hit_tokens: Option<f64>,
    /// Cumulative prefix-cache query tokens, when reported.
    pub prefix_query_tokens: Option<f64>,
    /// Tokens the KV cache holds (vLLM `cache_config_info`: `num_gpu_blocks` × `block_size`),
    /// when reported.
    pub cache_tokens: Option<f64>,
}

/// A reading with its time.
#[derive(Debug, Clone)]
struct Stamped<T> {
    value: T,
    at: Instant,
}

/// The signals of one server.
#[derive(Debug, Default)]
pub struct NodeSignals {
    models: Mutex<Option<Stamped<Arc<[String]>>>>,
    load: Mutex<Option<Stamped<Load>>>,
    /// A scrape of this server is running (a slow one is never overlapped by the next round).
    scraping: AtomicBool,
}

impl NodeSignals {
    /// Records the models the server listed.
    pub fn set_models(&self, models: Vec<String>, now: Instant) {
        *self.models.lock() = Some(Stamped {
            value: models.into(),
            at: now,
        });
    }

    /// The models last listed, if discovery has answered.
    pub fn models(&self) -> Option<Arc<[String]>> {
        self.models.lock().as_ref().map(|s| s.value.clone())
    }

    /// Records a metrics reading.
    pub fn set_load(&self, load: Load, now: Instant) {
        *self.load.lock() = Some(Stamped {
            value: load,
            at: now,
        });
    }

    /// The last metrics reading and how much it still counts: 1 when fresh, falling linearly to 0
    /// at `max_age`.
    pub fn load(&self, now: Instant, max_age: Duration) -> Option<(Load, f64)> {
        let held = self.load.lock();
        let stamped = held.as_ref()?;
        let age = now.saturating_duration_since(stamped.at);
        if age >= max_age || max_age.is_zero() {
            return None;
        }
        let weight = 1.0 - age.as_secs_f64() / max_age.as_secs_f64();
        Some((stamped.value, weight))
    }

    /// Claims the right to scrape this server; false while another scrape is still running.
    pub fn begin_scrape(&self) -> bool {
        !self.scraping.swap(true, Ordering::AcqRel)
    }

    /// Releases the claim taken by [`Self::begin_scrape`].
    pub fn end_scrape(&self) {
        self.scraping.store(false, Ordering::Release);
    }

    /// The last metrics reading, whatever its age (for status and metrics).
    pub fn last_load(&self) -> Option<(Load, Instant)> {
        self.load.lock().as_ref().map(|s| (s.value, s.at))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readings_fade_with_age() {
        let signals = NodeSignals::default();
        let t0 = Instant::now();
        assert!(signals.load(t0, Duration::from_secs(10)).is_none());
        let load = Load {
            waiting: 3.0,
            running: 2.0,
            kv_usage: Some(0.5),
            prefix_hit_tokens: None,
            prefix_query_tokens: None,
            cache_tokens: None,
        };
        signals.set_load(load, t0);
        let (got, weight) = signals
            .load(t0 + Duration::from_secs(5), Duration::from_secs(10))
            .expect("fresh");
        assert_eq!(got, load);
        assert!((weight - 0.5).abs() < 1e-9);
        assert!(signals
            .load(t0 + Duration::from_secs(10), Duration::from_secs(10))
            .is_none());
        assert!(signals.models().is_none());
        signals.set_models(vec!["m".into()], t0);
        assert_eq!(signals.models().as_deref(), Some(&["m".to_string()][..]));
    }

    #[test]
    fn one_scrape_at_a_time() {
        let signals = NodeSignals::default();
        assert!(signals.begin_scrape());
        assert!(!signals.begin_scrape());
        signals.end_scrape();
        assert!(signals.begin_scrape());
    }
}
