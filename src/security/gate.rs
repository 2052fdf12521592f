//! What a proxy listener does with a new connection before HTTP parsing: reads the PROXY header
//! (plain listeners; TLS ones do it before the handshake), refuses connections over the
//! listener's `max_connections` and over `max_connections_per_ip` (read from the current
//! snapshot, so a reload changes it), and bounds the time the first request head may take
//! (`header_timeout`) by wrapping the stream in a [`HeadDeadline`].

use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::protocols::Stream;
use pingora::server::ShutdownWatch;

use super::head_deadline::HeadDeadline;
use super::proxy_protocol::ProxyProtocol;
use crate::runtime::SnapshotStore;

/// Connections a listener serves at once, counted while they live.
#[derive(Debug, Default)]
pub struct ConnectionCount {
    open: AtomicU32,
}

/// One counted connection; dropping it gives the place back.
#[derive(Debug)]
pub struct CountedPlace {
    count: Arc<ConnectionCount>,
}

impl ConnectionCount {
    /// A place when fewer than `max` are taken (`None` = no limit).
    pub fn enter(self: &Arc<Self>, max: Option<u32>) -> Option<CountedPlace> {
        let max = max.unwrap_or(u32::MAX);
        self.open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |open| {
                (open < max).then_some(open + 1)
            })
            .ok()?;
        Some(CountedPlace {
            count: self.clone(),
        })
    }

    /// Connections counted now.
    pub fn open(&self) -> u32 {
        self.open.load(Ordering::Acquire)
    }
}

impl Drop for CountedPlace {
    fn drop(&mut self) {
        self.count.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The gate's settings for one listener.
#[derive(Debug, Clone)]
pub struct GateSettings {
    /// PROXY protocol on a plain listener (TLS listeners read it in the pre-TLS callback).
    pub proxy_protocol: Option<ProxyProtocol>,
    pub max_connections: Option<u32>,
    pub header_timeout: Duration,
}

/// Wraps a listener's application with the connection checks.
pub struct ConnectionGate<A> {
    inner: Arc<A>,
    settings: GateSettings,
    snapshots: Arc<SnapshotStore>,
    open: Arc<ConnectionCount>,
    per_ip: Arc<super::connections::PerIpLimit>,
}

impl<A> ConnectionGate<A> {
    pub fn new(settings: GateSettings, snapshots: Arc<SnapshotStore>, inner: A) -> Self {
        Self {
            inner: Arc::new(inner),
            settings,
            snapshots,
            open: Arc::new(ConnectionCount::default()),
            per_ip: super::connections::PerIpLimit::new(),
        }
    }
}

fn peer_ip(stream: &Stream) -> Option<IpAddr> {
    stream
        .get_socket_digest()
        .and_then(|d| d.peer_addr().and_then(|a| a.as_inet()).map(|a| a.ip()))
}

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> ServerApp for ConnectionGate<A> {
    async fn process_new(
        self: &Arc<Self>,
        mut stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let Some(_place) = self.open.enter(self.settings.max_connections) else {
            crate::observe::metrics::connection_refused("max_connections");
            return None;
        };
        if let Some(policy) = &self.settings.proxy_protocol {
            let fd = stream.id();
            if let Err(error) = policy.accept(&mut *stream, fd).await {
                tracing::debug!(%error, "connection refused");
                return None;
            }
        }
        // The address the PROXY header named, or the peer's.
        let per_ip_max = self.snapshots.load().max_connections_per_ip;
        let _slot = match (per_ip_max, peer_ip(&stream)) {
            (Some(max), Some(ip)) => match self.per_ip.acquire(ip, max) {
                Some(slot) => Some(slot),
                None => {
                    crate::observe::metrics::connection_refused("per_ip");
                    return None;
                }
            },
            _ => None,
        };
        let stream: Stream = Box::new(HeadDeadline::new(stream, self.settings.header_timeout));
        // Serve every keep-alive request here so the places cover the connection's whole life.
        let mut next = self.inner.process_new(stream, shutdown).await;
        for _ in 0..u32::MAX {
            let Some(stream) = next else {
                break;
            };
            next = self.inner.process_new(stream, shutdown).await;
        }
        None
    }

    async fn cleanup(&self) {
        self.inner.cleanup().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn places_are_counted_and_given_back() {
        let count = Arc::new(ConnectionCount::default());
        let a = count.enter(Some(2)).unwrap();
        let b = count.enter(Some(2)).unwrap();
        assert!(count.enter(Some(2)).is_none());
        assert_eq!(count.open(), 2);
        drop(a);
        let c = count.enter(Some(2)).unwrap();
        drop((b, c));
        assert_eq!(count.open(), 0);
        let unlimited: Vec<_> = (0..10).filter_map(|_| count.enter(None)).collect();
        assert_eq!(unlimited.len(), 10);
    }
}
