//! vLLM's KV-cache events (`--kv-events-config` with the zmq publisher): what the node's prefix
//! cache stores, evicts and clears, published as msgpack batches on a ZMQ PUB socket with a
//! replay ROUTER socket for subscribers that missed some ([`wire`] the bytes, [`publisher`] the
//! sockets).

pub mod publisher;
pub mod wire;

pub use publisher::{KvEventsConfig, Publisher};
pub use wire::{BlockStored, KvEvent};
