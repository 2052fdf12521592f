//! The latency model, as pure functions: prefill time for the uncached part, per-token decode latency growing with the running batch, and the deterministic words a
//! node emits.

use std::time::Duration;

/// Words cycled through as output tokens (one word and a space per token).
const FILLER_WORDS: [&str; 16] = [
    "the", "quick", "brown", "fox", "jumps", "over", "a", "lazy", "dog", "while", "GPUs", "hum",
    "softly", "in", "the", "rack",
];

/// Time to prefill `uncached` tokens at `tokens_per_sec`, scaled by `slow_factor`.
pub fn prefill_time(uncached: u32, tokens_per_sec: f64, slow_factor: f64) -> Duration {
    seconds(f64::from(uncached) / tokens_per_sec * slow_factor)
}

/// Latency of one output token when `running` requests share the GPU:
/// `decode_ms × (1 + (running − 1) / batch_slowdown) × slow_factor`.
pub fn inter_token_time(
    decode_ms: f64,
    running: usize,
    batch_slowdown: f64,
    slow_factor: f64,
) -> Duration {
    let others = running.saturating_sub(1) as f64;
    seconds(decode_ms / 1000.0 * (1.0 + others / batch_slowdown) * slow_factor)
}

/// Output tokens for a request asking for `requested` (or nothing).
pub fn output_tokens(requested: Option<u32>, default: u32, cap: u32) -> u32 {
    requested.unwrap_or(default).min(cap)
}

/// The text of output token `index` (deterministic).
pub fn token_text(index: u32) -> String {
    let word = FILLER_WORDS[index as usize % FILLER_WORDS.len()];
    format!("{word} ")
}

fn seconds(s: f64) -> Duration {
    if s.is_finite() && s > 0.0 {
        Duration::try_from_secs_f64(s).unwrap_or(Duration::MAX)
    } else {
        Duration::ZERO
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefill_counts_only_uncached_tokens() {
        assert_eq!(prefill_time(8000, 8000.0, 1.0), Duration::from_secs(1));
        assert_eq!(prefill_time(800, 8000.0, 2.0), Duration::from_millis(200));
        assert_eq!(prefill_time(0, 8000.0, 1.0), Duration::ZERO);
    }

    #[test]
    fn decode_slows_with_the_batch() {
        let alone = inter_token_time(20.0, 1, 16.0, 1.0);
        assert_eq!(alone, Duration::from_millis(20));
        assert_eq!(
            inter_token_time(20.0, 17, 16.0, 1.0),
            Duration::from_millis(40)
        );
        assert!(inter_token_time(20.0, 5, 16.0, 1.0) > alone);
        assert_eq!(
            inter_token_time(20.0, 1, 16.0, 3.0),
            Duration::from_millis(60)
        );
        assert_eq!(inter_token_time(0.0, 8, 16.0, 1.0), Duration::ZERO);
    }

    #[test]
    fn output_length_defaults_and_caps() {
        assert_eq!(output_tokens(None, 64, 4096), 64);
        assert_eq!(output_tokens(Some(5), 64, 4096), 5);
        assert_eq!(output_tokens(Some(10_000), 64, 4096), 4096);
        assert_eq!(token_text(0), "the ");
        assert_eq!(token_text(16), token_text(0));
    }
}
