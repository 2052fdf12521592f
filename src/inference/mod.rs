//! Inference-aware balancing for OpenAI-compatible GPU upstreams (issue 8): pure building blocks.
//!
//! [`openai`] parses request bodies (model, prompt text) and builds OpenAI error JSON;
//! [`affinity`] ranks servers by rendezvous hash of a session key; [`prefix`] is the approximate
//! prefix index behind the `cache_aware` policy (chained block hashes of the normalized prompt, no
//! tokenizer, bounded load); [`metrics_text`] reads an engine's Prometheus exposition into a
//! load reading, and [`scrape`] is the background service that asks each server for its models
//! and metrics. Wiring into the proxy hooks comes later.

pub mod affinity;
pub mod metrics_text;
pub mod openai;
pub mod prefix;
pub mod scrape;
pub mod signals;
