//! Inference-aware balancing for OpenAI-compatible GPU upstreams (issue 8): pure building blocks.
//!
//! [`openai`] parses request bodies (model, prompt text) and builds OpenAI error JSON;
//! [`affinity`] ranks servers by rendezvous hash of a session key; [`prefix`] is the approximate
//! prefix index behind the `cache_aware` policy (chained block hashes of the normalized prompt, no
//! tokenizer, bounded load). Wiring into the proxy hooks comes later.

pub mod affinity;
pub mod openai;
pub mod prefix;
pub mod scan;
pub mod signals;
