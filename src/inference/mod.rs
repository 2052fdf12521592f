//! Inference-aware balancing for OpenAI-compatible GPU upstreams: the request-side pieces.
//!
//! [`openai`] parses request bodies (model, prompt text) and builds OpenAI error JSON;
//! [`affinity`] ranks servers by rendezvous hash of a session key; [`prefix`] is the approximate
//! prefix model behind the `cache_aware` policy (chained block hashes of the normalized prompt, no
//! tokenizer; a per-server index, the cost model, the spread of hot prefixes) and [`node_model`]
//! what it learns about each node (slots, service time, prefill rate and backlog);
//! [`kv_events`] is the exact cache state of nodes that publish KV-cache events; [`scan`] reads
//! a body prefix; [`request`] classifies endpoints and holds a request's routing facts;
//! [`signals`] keeps what each server reports about itself, [`usage`] reads the token usage a
//! response reports, [`metrics_text`] reads an engine's Prometheus exposition into a load
//! reading, and [`metrics`] holds the inference families. The background service that asks each
//! server for its models and metrics is [`crate::monitor::scrape`].

pub mod affinity;
pub mod kv_events;
pub mod metrics;
pub mod metrics_text;
pub mod node_model;
pub mod openai;
pub mod prefix;
pub mod request;
pub mod scan;
pub mod signals;
pub mod usage;
