//! ferrogate: an edge TLS load balancer for self-hosted LLM chat (OpenWebUI replicas, GPU inference
//! pools) built on pingora and rustls.
//!
//! Data flows one way: YAML → [`config`] (validated model) → [`runtime::Snapshot`] (compiled,
//! immutable) → swapped into [`runtime::SnapshotStore`] → read by the [`proxy`] request path.
//! State that must outlive a reload (certificates, the upstream [`pool`]: health, in-flight,
//! sticky tables) lives beside the snapshot, never inside it.

pub mod acme;
pub mod admin;
pub mod balance;
pub mod cli;
pub mod cluster;
pub mod config;
#[cfg(feature = "demo")]
pub mod demo;
pub mod geoip;
pub mod haproxy;
pub mod inference;
pub mod lifecycle;
pub mod monitor;
pub mod observe;
pub mod otel;
pub mod pem;
pub mod pool;
pub mod proxy;
pub mod reload;
pub mod routing;
pub mod runtime;
pub mod security;
pub mod server;
#[cfg(test)]
pub(crate) mod test_pki;
pub mod tls;
