//! DNS discovery, a background service: for every upstream with `discovery` in the current
//! snapshot, re-resolve `NAME` (A and AAAA) every `refresh` and hand the addresses to its
//! long-lived pool, which adds and removes servers without a reload. A failed lookup keeps the
//! last known servers.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use hickory_resolver::config::{NameServerConfigGroup, ResolverConfig, ResolverOpts};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::TokioResolver;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

use super::periodic;
use crate::config::model::Discovery;
use crate::runtime::{SnapshotStore, UpstreamRuntime};

/// Longest sleep between two looks at the snapshot.
pub const DISCOVERY_TICK: Duration = Duration::from_millis(250);

/// The discovery service.
pub struct DnsDiscovery {
    snapshots: Arc<SnapshotStore>,
}

impl DnsDiscovery {
    pub fn new(snapshots: Arc<SnapshotStore>) -> Self {
        Self { snapshots }
    }
}

#[async_trait]
impl BackgroundService for DnsDiscovery {
    async fn start(&self, shutdown: ShutdownWatch) {
        periodic::every_upstream(
            &self.snapshots,
            DISCOVERY_TICK,
            shutdown,
            |u| u.discovery.as_ref().map(|d| d.refresh),
            |u| drop(tokio::spawn(refresh(u.clone()))),
        )
        .await;
    }
}

/// A resolver for `discovery`: its nameserver, or the system's; no cache (each refresh asks).
fn resolver(discovery: &Discovery) -> Result<TokioResolver, String> {
    let mut options = ResolverOpts::default();
    options.cache_size = 0;
    options.timeout = discovery.refresh.min(Duration::from_secs(5));
    options.attempts = 1;
    let builder = match discovery.nameserver {
        Some(server) => {
            let group = NameServerConfigGroup::from_ips_clear(&[server.ip()], server.port(), true);
            TokioResolver::builder_with_config(
                ResolverConfig::from_parts(None, vec![], group),
                TokioConnectionProvider::default(),
            )
        }
        None => TokioResolver::builder_tokio().map_err(|e| format!("system resolver: {e}"))?,
    };
    Ok(builder.with_options(options).build())
}

/// Resolves the upstream's name once and updates its pool.
async fn refresh(upstream: Arc<UpstreamRuntime>) {
    let Some(discovery) = &upstream.discovery else {
        return;
    };
    match resolve(discovery).await {
        Ok(found) => {
            let count = found.len();
            if upstream.pool.set_discovered(found) {
                tracing::info!(upstream = %upstream.name, name = %discovery.name, servers = count, "discovery changed the servers");
            }
        }
        Err(error) => {
            tracing::warn!(upstream = %upstream.name, name = %discovery.name, %error, "discovery lookup failed; keeping the last servers");
        }
    }
}

/// Every A/AAAA address of the name, with the configured port. A name that exists but has no
/// address yields an empty list (every server removed).
pub async fn resolve(discovery: &Discovery) -> Result<Vec<SocketAddr>, String> {
    let resolver = resolver(discovery)?;
    match resolver.lookup_ip(discovery.name.as_str()).await {
        Ok(lookup) => Ok(lookup
            .iter()
            .map(|ip| SocketAddr::new(ip, discovery.port))
            .collect()),
        Err(error) if error.is_no_records_found() => Ok(Vec::new()),
        Err(error) => Err(error.to_string()),
    }
}
