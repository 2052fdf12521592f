//! The validated `inference:` settings of an upstream: which engine its servers run, where the
//! model list comes from, how often node signals are refreshed, the body cap and session affinity.

use std::time::Duration;

/// Default period of `/v1/models` discovery and metrics scraping.
pub const DEFAULT_INFERENCE_REFRESH: Duration = Duration::from_secs(10);
/// Default cap on an inference request body read for routing (larger ones get 413).
pub const DEFAULT_INFERENCE_MAX_BODY: u64 = 32 << 20;
/// Default age after which scraped node signals no longer count.
pub const DEFAULT_SIGNAL_MAX_AGE: Duration = Duration::from_secs(30);

/// The server software behind an inference upstream: decides which metrics are scraped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Vllm,
    Sglang,
    Llamacpp,
    /// Ray Serve (vLLM inside; its metrics use vLLM's names).
    Ray,
    /// Ollama: no Prometheus metrics.
    Ollama,
    /// Any other OpenAI-compatible server: no metrics.
    Openai,
}

impl Engine {
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "vllm" => Self::Vllm,
            "sglang" => Self::Sglang,
            "llamacpp" | "llama.cpp" => Self::Llamacpp,
            "ray" => Self::Ray,
            "ollama" => Self::Ollama,
            "openai" => Self::Openai,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Vllm => "vllm",
            Self::Sglang => "sglang",
            Self::Llamacpp => "llamacpp",
            Self::Ray => "ray",
            Self::Ollama => "ollama",
            Self::Openai => "openai",
        }
    }

    /// Whether the engine exposes Prometheus metrics at `/metrics` worth scraping.
    pub fn has_metrics(self) -> bool {
        matches!(self, Self::Vllm | Self::Sglang | Self::Llamacpp | Self::Ray)
    }
}

/// Where an inference upstream's model list comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Models {
    /// Each server's `GET /v1/models`, refreshed every `refresh`.
    Discover,
    /// Every server serves these (a server's own `models:` overrides).
    List(Vec<String>),
}

/// `upstreams.NAME.inference`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inference {
    pub engine: Engine,
    pub models: Models,
    /// Period of model discovery and metrics scraping.
    pub refresh: Duration,
    /// Largest request body read for routing; larger ones get 413.
    pub max_body: u64,
    /// Session affinity by `X-OpenWebUI-Chat-Id`, `X-OpenWebUI-User-Id` or the body's `user`.
    pub affinity: bool,
    /// Scraped signals older than this are ignored (in-flight counts alone decide).
    pub signal_max_age: Duration,
    /// Each server's prompt throughput (tokens/s) for `cache_aware`'s cost model; learned from
    /// observed times to first token when not set.
    pub prefill_tokens_per_sec: Option<u64>,
    /// Each server's KV cache in tokens, when its engine does not report it (vLLM does).
    pub cache_tokens: Option<u64>,
    /// `PYTHONHASHSEED` the engines hash their blocks with (`kv_events` servers).
    pub kv_hash_seed: String,
}

/// `PYTHONHASHSEED` assumed for the engines' block hashes unless configured.
pub const DEFAULT_KV_HASH_SEED: &str = "0";
