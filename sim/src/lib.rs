//! `ferrogate-sim`: a simulated OpenAI-compatible GPU inference node (vLLM-like) for ferrogate's
//! tests, its demo and its routing benchmarks. It serves `/v1/models`, chat and text completions
//! (streamed or not), `/health`, `/metrics` under vLLM, SGLang or llama.cpp names, and the token
//! endpoints routers call (`/tokenize`, `/v1/chat/completions/render`), from a model of a GPU: a
//! deterministic tokenizer and chat template ([`tokenizer`]), a paged prefix cache keyed by
//! vLLM's `sha256_cbor` block hashes ([`prefix_cache`], [`block_hash`]) whose changes go out as
//! vLLM KV-cache events over ZMQ ([`kv_events`]), continuous batching with a FIFO queue
//! ([`node`]), and a latency model ([`timing`]). Faults are injected by flags or `POST
//! /sim/faults`; `GET /sim/stats` (or [`SimHandle::stats`]) tells tests what the node saw,
//! cancellations included. It shares no code with ferrogate: requests are parsed by its own
//! types ([`request`]), so a parser bug on either side shows up in the tests.
//!
//! In-process use:
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use ferrogate_sim::SimConfig;
//! let node = ferrogate_sim::start(SimConfig::with_model("llama")).await?;
//! println!("node at {}", node.url());
//! let stats = node.stats();
//! assert_eq!(stats.totals.cancelled, 0);
//! # Ok(()) }
//! ```

pub mod block_hash;
pub mod cli;
pub mod config;
pub mod errors;
pub mod faults;
pub mod generate;
pub mod http;
pub mod kv_events;
pub mod metrics;
pub mod node;
pub mod openai;
pub mod prefix_cache;
pub mod request;
pub mod stats;
pub mod timing;
pub mod tokenize;
pub mod tokenizer;

#[cfg(test)]
mod tests;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

pub use config::{Engine, SimConfig};
pub use faults::Faults;
pub use kv_events::KvEventsConfig;
pub use stats::{SimStats, Totals};

use node::Node;

/// Pause after a failed `accept` (e.g. out of file descriptors) before trying again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(10);

/// A running node. Dropping the handle stops it: the listener closes and open connections end.
#[derive(Debug)]
pub struct SimHandle {
    addr: SocketAddr,
    node: Arc<Node>,
    task: JoinHandle<()>,
}

impl SimHandle {
    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// What the node has seen so far (the `GET /sim/stats` body).
    pub fn stats(&self) -> SimStats {
        self.node.stats()
    }

    /// The `GET /metrics` text.
    pub fn metrics(&self) -> String {
        http::metrics_text(&self.node)
    }

    pub fn faults(&self) -> Faults {
        self.node.faults()
    }

    /// Replaces the faults in force (like `POST /sim/faults`).
    pub fn set_faults(&self, faults: Faults) -> Result<(), String> {
        faults.validate()?;
        self.node.set_faults(faults);
        Ok(())
    }

    pub fn config(&self) -> &SimConfig {
        &self.node.cfg
    }

    /// The bound KV event endpoints `(PUB, replay)` (`tcp://127.0.0.1:PORT`), when the node
    /// publishes.
    pub fn kv_event_endpoints(&self) -> Option<(String, Option<String>)> {
        self.node.kv_event_endpoints()
    }

    /// Drops the prefix cache like `POST /reset_prefix_cache`; `false` while requests run.
    pub fn reset_prefix_cache(&self) -> bool {
        self.node.reset_prefix_cache()
    }

    /// Waits until the node stops (it only stops when the handle is dropped or the accept loop
    /// dies), for a binary that serves until killed.
    pub async fn wait(&mut self) {
        let _ = (&mut self.task).await;
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts a node on `listener` (spawned on the current tokio runtime) and returns at once.
pub async fn serve(listener: TcpListener, cfg: SimConfig) -> io::Result<SimHandle> {
    cfg.validate()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let addr = listener.local_addr()?;
    let publisher = match &cfg.kv_events {
        Some(kv) => Some(kv_events::Publisher::start(kv).await?),
        None => None,
    };
    let node = Node::labelled(cfg, addr.to_string(), publisher);
    let task = tokio::spawn(accept_loop(listener, Arc::clone(&node)));
    Ok(SimHandle { addr, node, task })
}

/// Starts a node on `127.0.0.1:0`.
pub async fn start(cfg: SimConfig) -> io::Result<SimHandle> {
    serve(TcpListener::bind("127.0.0.1:0").await?, cfg).await
}

/// Accepts connections; the connection tasks live in a set owned by this task, so aborting it
/// ends them too.
async fn accept_loop(listener: TcpListener, node: Arc<Node>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    connections.spawn(serve_connection(stream, Arc::clone(&node)));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "ferrogate-sim: accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn serve_connection(stream: TcpStream, node: Arc<Node>) {
    let _ = stream.set_nodelay(true);
    let service = service_fn(move |req| http::handle(Arc::clone(&node), req));
    let result = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), service)
        .await;
    if let Err(e) = result {
        tracing::debug!(error = %e, "ferrogate-sim: connection ended with an error");
    }
}
