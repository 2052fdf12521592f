//! The `ferrogate-sim` command line (clap), turned into a [`SimConfig`].

use std::net::SocketAddr;

use clap::Parser;

use super::block_hash::DEFAULT_HASH_SEED;
use super::config::{self, Engine, SimConfig};
use super::faults::Faults;
use super::kv_events::publisher::{DEFAULT_REPLAY_BUFFER, DEFAULT_TOPIC};
use super::kv_events::KvEventsConfig;

/// A simulated OpenAI-compatible GPU inference node (vLLM, SGLang or llama.cpp flavoured).
#[derive(Debug, Clone, Parser)]
#[command(name = "ferrogate-sim", version)]
pub struct SimArgs {
    /// Address to listen on (port 0: any free port; the bound address is printed).
    #[arg(long, default_value = "127.0.0.1:8000")]
    pub listen: SocketAddr,
    /// A model id served (repeat for several).
    #[arg(long = "model", default_value = "sim-model")]
    pub models: Vec<String>,
    /// Whose metric names `/metrics` uses.
    #[arg(long, value_enum, default_value_t = Engine::Vllm)]
    pub engine: Engine,
    /// Requests running at once; more wait in a FIFO queue.
    #[arg(long, default_value_t = config::DEFAULT_MAX_NUM_SEQS)]
    pub max_num_seqs: usize,
    /// Most requests waiting; beyond it requests get 503 with Retry-After (default: unbounded).
    #[arg(long)]
    pub max_waiting: Option<usize>,
    /// Prefix (KV) cache capacity in blocks.
    #[arg(long, default_value_t = config::DEFAULT_CACHE_BLOCKS)]
    pub cache_blocks: usize,
    /// Tokens per cache block.
    #[arg(long, default_value_t = config::DEFAULT_BLOCK_TOKENS)]
    pub block_tokens: usize,
    /// Uncached prompt tokens prefilled per second by the whole node (concurrent prefills queue).
    #[arg(long, default_value_t = config::DEFAULT_PREFILL_TOKENS_PER_SEC)]
    pub prefill_tokens_per_sec: f64,
    /// Milliseconds per output token for a lone request.
    #[arg(long, default_value_t = config::DEFAULT_DECODE_MS)]
    pub decode_ms: f64,
    /// Running requests that double the per-token latency.
    #[arg(long, default_value_t = config::DEFAULT_BATCH_SLOWDOWN)]
    pub batch_slowdown: f64,
    /// Output tokens when a request names no max_tokens.
    #[arg(long, default_value_t = config::DEFAULT_MAX_TOKENS)]
    pub default_max_tokens: u32,
    /// Most output tokens any request gets.
    #[arg(long, default_value_t = config::DEFAULT_MAX_TOKENS_CAP)]
    pub max_tokens_cap: u32,
    /// Fault: share of completions answered 503 (0..1).
    #[arg(long, default_value_t = 0.0)]
    pub error_rate: f64,
    /// Fault: multiplies every simulated latency.
    #[arg(long, default_value_t = 1.0)]
    pub slow_factor: f64,
    /// Fault: drop the connection after this many output tokens.
    #[arg(long)]
    pub kill_after_tokens: Option<u32>,
    /// Fault: `/health` answers 503.
    #[arg(long)]
    pub unhealthy: bool,
    /// Runtime worker threads.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Publish vLLM KV-cache events on a ZMQ PUB socket bound here (e.g. tcp://127.0.0.1:5557).
    #[arg(long, value_name = "ENDPOINT")]
    pub kv_events: Option<String>,
    /// Answer KV event replay requests on a ZMQ ROUTER socket bound here.
    #[arg(long, value_name = "ENDPOINT", requires = "kv_events")]
    pub kv_events_replay: Option<String>,
    /// Topic frame of the KV events.
    #[arg(long, default_value = DEFAULT_TOPIC)]
    pub kv_events_topic: String,
    /// KV event batches kept for replay.
    #[arg(long, default_value_t = DEFAULT_REPLAY_BUFFER)]
    pub kv_events_buffer: usize,
    /// PYTHONHASHSEED of the block hashes (vLLM sha256_cbor).
    #[arg(long, default_value = DEFAULT_HASH_SEED)]
    pub hash_seed: String,
}

impl SimArgs {
    /// The node these flags describe, validated.
    pub fn to_config(&self) -> Result<SimConfig, String> {
        let cfg = SimConfig {
            models: self.models.clone(),
            engine: self.engine,
            max_num_seqs: self.max_num_seqs,
            max_waiting: self.max_waiting,
            cache_blocks: self.cache_blocks,
            block_tokens: self.block_tokens,
            prefill_tokens_per_sec: self.prefill_tokens_per_sec,
            decode_ms: self.decode_ms,
            batch_slowdown: self.batch_slowdown,
            default_max_tokens: self.default_max_tokens,
            max_tokens_cap: self.max_tokens_cap,
            faults: Faults {
                error_rate: self.error_rate,
                slow_factor: self.slow_factor,
                kill_after_tokens: self.kill_after_tokens,
                unhealthy: self.unhealthy,
            },
            kv_events: self.kv_events.as_ref().map(|endpoint| KvEventsConfig {
                endpoint: endpoint.clone(),
                replay_endpoint: self.kv_events_replay.clone(),
                topic: self.kv_events_topic.clone(),
                replay_buffer: self.kv_events_buffer,
            }),
            hash_seed: self.hash_seed.clone(),
        };
        cfg.validate()?;
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_map_onto_the_config() {
        let args = SimArgs::try_parse_from([
            "ferrogate-sim",
            "--listen",
            "127.0.0.1:0",
            "--model",
            "a",
            "--model",
            "b",
            "--engine",
            "sglang",
            "--max-num-seqs",
            "2",
            "--max-waiting",
            "5",
            "--decode-ms",
            "1.5",
            "--kill-after-tokens",
            "3",
            "--unhealthy",
            "--kv-events",
            "tcp://127.0.0.1:0",
            "--kv-events-replay",
            "tcp://127.0.0.1:0",
            "--hash-seed",
            "42",
        ])
        .unwrap();
        let cfg = args.to_config().unwrap();
        assert_eq!(cfg.models, vec!["a", "b"]);
        assert_eq!(cfg.engine, Engine::Sglang);
        assert_eq!(cfg.max_num_seqs, 2);
        assert_eq!(cfg.max_waiting, Some(5));
        assert_eq!(cfg.decode_ms, 1.5);
        assert_eq!(cfg.faults.kill_after_tokens, Some(3));
        assert!(cfg.faults.unhealthy);
        assert_eq!(args.listen.port(), 0);
        let kv = cfg.kv_events.unwrap();
        assert_eq!(kv.endpoint, "tcp://127.0.0.1:0");
        assert_eq!(kv.replay_endpoint.as_deref(), Some("tcp://127.0.0.1:0"));
        assert_eq!(kv.topic, "kv-events");
        assert_eq!(cfg.hash_seed, "42");
    }

    #[test]
    fn defaults_and_invalid_values() {
        let cfg = SimArgs::try_parse_from(["ferrogate-sim"])
            .unwrap()
            .to_config()
            .unwrap();
        assert_eq!(cfg.models, vec!["sim-model"]);
        assert_eq!(cfg.engine, Engine::Vllm);
        assert_eq!(cfg.kv_events, None);
        assert_eq!(cfg.hash_seed, "0");
        assert!(
            SimArgs::try_parse_from(["ferrogate-sim", "--kv-events-replay", "tcp://x:1"]).is_err()
        );
        let bad = SimArgs::try_parse_from(["ferrogate-sim", "--error-rate", "2"]).unwrap();
        assert!(bad.to_config().is_err());
        assert!(SimArgs::try_parse_from(["ferrogate-sim", "--engine", "ollama"]).is_err());
    }
}
