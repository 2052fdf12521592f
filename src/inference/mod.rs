//! Inference-aware balancing for OpenAI-compatible GPU upstreams: the request-side pieces.
//!
//! [`openai`] parses request bodies (model, prompt text) and builds OpenAI error JSON;
//! [`affinity`] ranks servers by rendezvous hash of a session key; [`prefix`] is the approximate
//! prefix index behind the `cache_aware` policy (chained block hashes of the normalized prompt, no
//! tokenizer, bounded load); [`scan`] reads a body prefix; [`request`] classifies endpoints and
//! holds a request's routing facts; [`signals`] keeps what each server reports about itself,
//! [`usage`] reads the token usage a response reports, [`metrics_text`] reads an engine's
//! Prometheus exposition into a load reading, and [`metrics`] holds the inference families. The background service that asks each server for its models
//! and metrics is [`crate::monitor::scrape`].

pub mod affinity;
pub mod metrics;
pub mod metrics_text;
pub mod openai;
pub mod prefix;
pub mod request;
pub mod scan;
pub mod signals;
pub mod usage;
