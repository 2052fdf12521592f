//! What `cache_aware` learns about one inference node to predict what a request costs there:
//! its batch slots (the engine's running count whenever requests wait in its queue), how long a
//! request holds a slot (service time, from requests that found a free slot), how fast it
//! prefills (prompt tokens per second, from the time to first token of requests that found it
//! idle) and the prefill work already sent to it, kept as a timeline like the GPU's own: the
//! prefills of a batch take turns on one GPU, so a request's prompt starts once the prompts
//! before it are done. It also counts the requests sent to the node per second (a decaying
//! count): the requests a long prefill there would hold up.

use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// Seconds a request is assumed to hold a slot before any was observed.
pub const DEFAULT_SERVICE_SECS: f64 = 1.0;
/// Prompt tokens per second assumed before any time to first token was observed (a mid-size
/// model on one data-centre GPU).
pub const DEFAULT_PREFILL_TOKENS_PER_SEC: f64 = 8_000.0;
/// Weight of a new sample in the moving averages.
const EWMA_WEIGHT: f64 = 0.1;
/// Weight of a new reading in the learned batch size.
const SLOTS_WEIGHT: f64 = 0.3;
/// Fewest uncached prompt tokens whose time to first token teaches the prefill rate (shorter
/// prompts are dominated by the first decode step and network time).
pub const MIN_PREFILL_SAMPLE_TOKENS: f64 = 512.0;
/// A prefill-rate sample is clamped to this factor of the current estimate either way (a
/// mispredicted cache hit must not swing the estimate).
const PREFILL_SAMPLE_CLAMP: f64 = 4.0;
/// Time constants of the two decaying arrival counts, in seconds: the short one sees a surge
/// as it starts, the long one reads a node's steady rate from a few dozen requests (over a few
/// seconds a handful a second is mostly Poisson noise). The rate is the larger of the two: a
/// prefill placed on a node holds up whatever arrives there, and either a surge under way or a
/// steady level the short count happened to miss is traffic it will meet.
pub const ARRIVAL_WINDOWS_SECS: [f64; 2] = [5.0, 20.0];

/// The learned values, each `None` until observed.
#[derive(Debug, Default, Clone, Copy)]
struct Learned {
    service_secs: Option<f64>,
    prefill_rate: Option<f64>,
    batch_slots: Option<f64>,
    prefill_busy_until: Option<Instant>,
    /// Decaying counts of requests sent (one per [`ARRIVAL_WINDOWS_SECS`]), as of
    /// `last_arrival`.
    arrivals: [f64; 2],
    last_arrival: Option<Instant>,
}

/// One node's learned model (kept in its long-lived server state).
#[derive(Debug, Default)]
pub struct NodeModel {
    learned: Mutex<Learned>,
}

/// What the model predicts for a node now.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Estimates {
    /// Seconds a request holds a slot.
    pub service_secs: f64,
    /// Prompt tokens per second (learned, else `fallback_rate`).
    pub prefill_rate: f64,
    /// Batch slots the engine showed it runs at once; `None` until it was seen with a queue.
    pub batch_slots: Option<f64>,
    /// Seconds of prefill already sent to the node and not yet done.
    pub prefill_backlog_secs: f64,
    /// Requests sent to the node per second, lately.
    pub arrival_rate: f64,
}

fn ewma(old: Option<f64>, sample: f64, weight: f64) -> f64 {
    match old {
        Some(old) => old + weight * (sample - old),
        None => sample,
    }
}

impl NodeModel {
    /// A request that found a free slot ended after `elapsed`.
    pub fn observe_service(&self, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        if !(secs.is_finite() && secs > 0.0) {
            return;
        }
        let mut l = self.learned.lock();
        l.service_secs = Some(ewma(l.service_secs, secs, EWMA_WEIGHT));
    }

    /// A request that found the node's prefill idle and a free slot got its first token after
    /// `ttft`, with `uncached_tokens` of its prompt to prefill.
    pub fn observe_first_token(&self, uncached_tokens: f64, ttft: Duration) {
        let secs = ttft.as_secs_f64();
        if uncached_tokens < MIN_PREFILL_SAMPLE_TOKENS || !(secs.is_finite() && secs > 0.0) {
            return;
        }
        let mut l = self.learned.lock();
        let mut sample = uncached_tokens / secs;
        if let Some(current) = l.prefill_rate {
            sample = sample.clamp(
                current / PREFILL_SAMPLE_CLAMP,
                current * PREFILL_SAMPLE_CLAMP,
            );
        }
        l.prefill_rate = Some(ewma(l.prefill_rate, sample, EWMA_WEIGHT));
    }

    /// A metrics reading: with requests waiting, the running ones fill the batch, so their count
    /// is the batch size; without, a larger running count still shows more slots.
    pub fn observe_reading(&self, running: f64, waiting: f64) {
        if !(running.is_finite() && waiting.is_finite()) || running < 1.0 {
            return;
        }
        let mut l = self.learned.lock();
        if waiting >= 1.0 {
            l.batch_slots = Some(ewma(l.batch_slots, running, SLOTS_WEIGHT));
        } else if l.batch_slots.is_some_and(|slots| running > slots) {
            l.batch_slots = Some(running);
        }
    }

    /// Puts `secs` of prefill on the node's timeline (it starts when the prefills before it
    /// end) and returns the seconds that were ahead of it.
    pub fn reserve_prefill(&self, secs: f64, now: Instant) -> f64 {
        let mut l = self.learned.lock();
        let start = l.prefill_busy_until.map_or(now, |busy| busy.max(now));
        let ahead = start.saturating_duration_since(now).as_secs_f64();
        if secs.is_finite() && secs > 0.0 {
            l.prefill_busy_until = Some(start + Duration::from_secs_f64(secs.min(3_600.0)));
        }
        ahead
    }

    /// A request was sent to the node at `now`.
    pub fn note_arrival(&self, now: Instant) {
        let mut l = self.learned.lock();
        let last = l.last_arrival;
        for (count, window) in l.arrivals.iter_mut().zip(ARRIVAL_WINDOWS_SECS) {
            *count = decayed(*count, window, last, now) + 1.0;
        }
        l.last_arrival = Some(l.last_arrival.map_or(now, |last| last.max(now)));
    }

    /// The node's estimates now; `fallback_rate` is the prefill rate before one was learned.
    pub fn estimates(&self, fallback_rate: f64, now: Instant) -> Estimates {
        let l = *self.learned.lock();
        Estimates {
            service_secs: l.service_secs.unwrap_or(DEFAULT_SERVICE_SECS),
            prefill_rate: l.prefill_rate.unwrap_or(fallback_rate),
            batch_slots: l.batch_slots,
            prefill_backlog_secs: l.prefill_busy_until.map_or(0.0, |busy| {
                busy.saturating_duration_since(now).as_secs_f64()
            }),
            arrival_rate: arrival_rate(&l, now),
        }
    }

    /// The learned prefill rate, if any.
    pub fn learned_prefill_rate(&self) -> Option<f64> {
        self.learned.lock().prefill_rate
    }
}

/// Requests sent per second lately: the larger of the short and the long count's rate.
fn arrival_rate(l: &Learned, now: Instant) -> f64 {
    l.arrivals
        .iter()
        .zip(ARRIVAL_WINDOWS_SECS)
        .map(|(count, window)| decayed(*count, window, l.last_arrival, now) / window)
        .fold(0.0, f64::max)
}

/// A count of events made at `last`, decayed to `now` (an exponential window of `window`
/// seconds: a steady rate r settles at r × the window).
fn decayed(count: f64, window: f64, last: Option<Instant>, now: Instant) -> f64 {
    let Some(last) = last else { return 0.0 };
    let age = now.saturating_duration_since(last).as_secs_f64();
    count * (-age / window).exp()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn learns_the_batch_size_from_queued_readings() {
        let model = NodeModel::default();
        let now = Instant::now();
        assert_eq!(model.estimates(100.0, now).batch_slots, None);
        model.observe_reading(3.0, 0.0);
        assert_eq!(
            model.estimates(100.0, now).batch_slots,
            None,
            "no queue, no limit seen"
        );
        model.observe_reading(8.0, 4.0);
        assert_eq!(model.estimates(100.0, now).batch_slots, Some(8.0));
        for _ in 0..20 {
            model.observe_reading(8.0, 2.0);
        }
        model.observe_reading(10.0, 0.0);
        assert_eq!(model.estimates(100.0, now).batch_slots, Some(10.0));
    }

    #[test]
    fn prefill_timeline_and_rate() {
        let model = NodeModel::default();
        let now = Instant::now();
        assert_eq!(model.reserve_prefill(1.0, now), 0.0);
        let ahead = model.reserve_prefill(0.5, now);
        assert!((ahead - 1.0).abs() < 1e-6);
        let e = model.estimates(4_000.0, now);
        assert!((e.prefill_backlog_secs - 1.5).abs() < 1e-6);
        assert_eq!(e.prefill_rate, 4_000.0);
        let later = now + Duration::from_secs(2);
        assert_eq!(model.estimates(4_000.0, later).prefill_backlog_secs, 0.0);
        // 5,000 tokens in 1.25 s: 4,000 tokens/s; short prompts teach nothing.
        model.observe_first_token(5_000.0, Duration::from_millis(1_250));
        model.observe_first_token(100.0, Duration::from_secs(5));
        assert_eq!(model.learned_prefill_rate(), Some(4_000.0));
        // A wild sample (a mispredicted hit) moves it by at most the clamp's share.
        model.observe_first_token(5_000.0, Duration::from_millis(1));
        let rate = model.learned_prefill_rate().unwrap_or(0.0);
        assert!(
            rate <= 4_000.0 + 0.1 * (16_000.0 - 4_000.0) + 1e-6,
            "{rate}"
        );
        model.observe_service(Duration::from_secs(2));
        assert_eq!(model.estimates(1.0, later).service_secs, 2.0);
    }

    #[test]
    fn a_surge_shows_at_once() {
        let model = NodeModel::default();
        let mut t = Instant::now();
        // One a second for a minute, then five within half a second.
        for _ in 0..60 {
            t += Duration::from_secs(1);
            model.note_arrival(t);
        }
        let steady = model.estimates(1.0, t).arrival_rate;
        assert!((steady - 1.0).abs() < 0.15, "{steady}");
        for _ in 0..5 {
            t += Duration::from_millis(100);
            model.note_arrival(t);
        }
        let surge = model.estimates(1.0, t).arrival_rate;
        assert!(surge > 1.8, "{surge}");
    }

    #[test]
    fn counts_requests_sent_per_second() {
        let model = NodeModel::default();
        let t0 = Instant::now();
        assert_eq!(model.estimates(1.0, t0).arrival_rate, 0.0);
        // Two a second for a minute: about two a second.
        let mut t = t0;
        for _ in 0..120 {
            t += Duration::from_millis(500);
            model.note_arrival(t);
        }
        let rate = model.estimates(1.0, t).arrival_rate;
        assert!((rate - 2.0).abs() < 0.3, "{rate}");
        // Six quiet seconds: the short count has fallen to a third, the long one still reads
        // most of the steady level.
        let lull = model
            .estimates(1.0, t + Duration::from_secs(6))
            .arrival_rate;
        assert!((1.3..1.7).contains(&lull), "{lull}");
        // Nothing for a while: it fades.
        let quiet = model
            .estimates(1.0, t + Duration::from_secs(150))
            .arrival_rate;
        assert!(quiet < 0.01, "{quiet}");
    }
}
