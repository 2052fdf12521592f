//! What one simulated node is: its models, engine flavour, batch and cache sizes, and the
//! latency model's constants. Plain data with defaults; [`SimConfig::validate`] rejects values the
//! simulation cannot run with.

use super::block_hash::DEFAULT_HASH_SEED;
use super::faults::Faults;
use super::kv_events::KvEventsConfig;

/// Requests running at once (vLLM `--max-num-seqs`) unless set.
pub const DEFAULT_MAX_NUM_SEQS: usize = 8;
/// KV cache capacity in blocks unless set.
pub const DEFAULT_CACHE_BLOCKS: usize = 2048;
/// Tokens per KV cache block unless set (vLLM's default block size).
pub const DEFAULT_BLOCK_TOKENS: usize = 16;
/// Prompt tokens prefilled per second unless set.
pub const DEFAULT_PREFILL_TOKENS_PER_SEC: f64 = 8000.0;
/// Milliseconds per output token for a batch of one unless set.
pub const DEFAULT_DECODE_MS: f64 = 20.0;
/// Running requests that double the per-token latency unless set.
pub const DEFAULT_BATCH_SLOWDOWN: f64 = 16.0;
/// Output tokens when a request names no `max_tokens`.
pub const DEFAULT_MAX_TOKENS: u32 = 64;
/// Most output tokens any request gets.
pub const DEFAULT_MAX_TOKENS_CAP: u32 = 4096;

/// Which inference server's metric names `/metrics` speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Engine {
    /// vLLM V1 names (`vllm:num_requests_running`, ...).
    #[default]
    Vllm,
    /// SGLang names (`sglang:num_running_reqs`, ...).
    Sglang,
    /// llama.cpp server names (`llamacpp:requests_processing`, ...).
    Llamacpp,
}

/// One simulated GPU node.
#[derive(Debug, Clone, PartialEq)]
pub struct SimConfig {
    /// Model ids served (at least one); all share one batch and one KV cache.
    pub models: Vec<String>,
    pub engine: Engine,
    /// Most requests running (prefill or decode) at once; the rest wait in FIFO order.
    pub max_num_seqs: usize,
    /// Most requests waiting; one more is answered 503 with `Retry-After`. `None`: unbounded.
    pub max_waiting: Option<usize>,
    /// KV cache capacity in blocks.
    pub cache_blocks: usize,
    /// Tokens per block.
    pub block_tokens: usize,
    /// Uncached prompt tokens prefilled per second by the whole node (concurrent prefills queue
    /// for the GPU).
    pub prefill_tokens_per_sec: f64,
    /// Milliseconds per output token when the request runs alone.
    pub decode_ms: f64,
    /// Per-token latency is `decode_ms × (1 + (running − 1) / batch_slowdown)`.
    pub batch_slowdown: f64,
    /// Output tokens when the request names no `max_tokens`.
    pub default_max_tokens: u32,
    /// Most output tokens any request gets.
    pub max_tokens_cap: u32,
    /// Faults active from the start (changed later by `POST /sim/faults`).
    pub faults: Faults,
    /// Publish KV-cache events (vLLM's zmq publisher) when set.
    pub kv_events: Option<KvEventsConfig>,
    /// `PYTHONHASHSEED` of the block hashes (vLLM `sha256_cbor`).
    pub hash_seed: String,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            models: vec!["sim-model".to_string()],
            engine: Engine::Vllm,
            max_num_seqs: DEFAULT_MAX_NUM_SEQS,
            max_waiting: None,
            cache_blocks: DEFAULT_CACHE_BLOCKS,
            block_tokens: DEFAULT_BLOCK_TOKENS,
            prefill_tokens_per_sec: DEFAULT_PREFILL_TOKENS_PER_SEC,
            decode_ms: DEFAULT_DECODE_MS,
            batch_slowdown: DEFAULT_BATCH_SLOWDOWN,
            default_max_tokens: DEFAULT_MAX_TOKENS,
            max_tokens_cap: DEFAULT_MAX_TOKENS_CAP,
            faults: Faults::default(),
            kv_events: None,
            hash_seed: DEFAULT_HASH_SEED.to_string(),
        }
    }
}

impl SimConfig {
    /// A node serving `model` with the defaults.
    pub fn with_model(model: &str) -> Self {
        SimConfig {
            models: vec![model.to_string()],
            ..SimConfig::default()
        }
    }

    /// Why this configuration cannot run, if it cannot.
    pub fn validate(&self) -> Result<(), String> {
        if self.models.is_empty() {
            return Err("at least one model is needed".into());
        }
        if self.models.iter().any(|m| m.is_empty()) {
            return Err("a model id must not be empty".into());
        }
        if self.max_num_seqs == 0 {
            return Err("max_num_seqs must be at least 1".into());
        }
        if self.block_tokens == 0 {
            return Err("block_tokens must be at least 1".into());
        }
        if !(self.prefill_tokens_per_sec.is_finite() && self.prefill_tokens_per_sec > 0.0) {
            return Err("prefill_tokens_per_sec must be a positive number".into());
        }
        if !(self.decode_ms.is_finite() && self.decode_ms >= 0.0) {
            return Err("decode_ms must be a number >= 0".into());
        }
        if !(self.batch_slowdown.is_finite() && self.batch_slowdown > 0.0) {
            return Err("batch_slowdown must be a positive number".into());
        }
        if let Some(kv) = &self.kv_events {
            if kv.endpoint.is_empty() {
                return Err("kv_events endpoint must not be empty".into());
            }
            if kv.replay_buffer == 0 {
                return Err("kv_events replay buffer must hold at least 1 batch".into());
            }
        }
        if self.max_tokens_cap == 0 {
            return Err("max_tokens_cap must be at least 1".into());
        }
        self.faults.validate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_values_are_named() {
        assert_eq!(SimConfig::default().validate(), Ok(()));
        let bad = SimConfig {
            max_num_seqs: 0,
            ..SimConfig::default()
        };
        assert!(bad.validate().unwrap_err().contains("max_num_seqs"));
        let bad = SimConfig {
            models: vec![],
            ..SimConfig::default()
        };
        assert!(bad.validate().is_err());
        let bad = SimConfig {
            prefill_tokens_per_sec: 0.0,
            ..SimConfig::default()
        };
        assert!(bad.validate().is_err());
    }
}
