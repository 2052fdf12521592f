//! What a proxy listener does with a new connection before HTTP parsing, in this order: refuses
//! connections over the listener's `max_connections`, reads the PROXY header, refuses those over
//! `max_connections_per_ip` (asked of the configuration in force, so a reload changes it), runs the
//! TLS handshake on TLS listeners (bounded by `header_timeout`, so a peer that stalls mid-way
//! holds nothing for long), and bounds the time the first request head may take
//! (`header_timeout`) by wrapping the stream in a [`HeadDeadline`]; then hands the connection to
//! a task of its own.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::listeners::tls::Acceptor;
use pingora::protocols::l4::stream::Stream as L4Stream;
use pingora::protocols::Stream;
use pingora::server::ShutdownWatch;

use super::head_deadline::HeadDeadline;
use super::metrics::SecurityMetrics;
use super::proxy_protocol::ProxyProtocol;

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
    /// PROXY protocol (read before the TLS handshake on TLS listeners).
    pub proxy_protocol: Option<ProxyProtocol>,
    pub max_connections: Option<u32>,
    pub header_timeout: Duration,
}

/// `max_connections_per_ip` of the configuration in force.
pub type PerIpMax = dyn Fn() -> Option<u32> + Send + Sync;

/// Wraps a listener's application with the connection checks.
pub struct ConnectionGate<A> {
    inner: Arc<A>,
    settings: GateSettings,
    per_ip_max: Box<PerIpMax>,
    metrics: Option<Arc<SecurityMetrics>>,
    open: Arc<ConnectionCount>,
    per_ip: Arc<super::connections::PerIpLimit>,
    tls: Option<Acceptor>,
}

impl<A> ConnectionGate<A> {
    pub fn new(
        settings: GateSettings,
        per_ip_max: Box<PerIpMax>,
        metrics: Option<Arc<SecurityMetrics>>,
        inner: A,
    ) -> Self {
        Self {
            inner: Arc::new(inner),
            settings,
            per_ip_max,
            metrics,
            open: Arc::new(ConnectionCount::default()),
            per_ip: super::connections::PerIpLimit::new(),
            tls: None,
        }
    }

    /// Makes this a TLS listener: the gate runs the handshake with `acceptor`.
    pub fn with_tls(mut self, acceptor: Acceptor) -> Self {
        self.tls = Some(acceptor);
        self
    }

    fn refused(&self, reason: &'static str) {
        if let Some(metrics) = &self.metrics {
            metrics.connection_refused(reason);
        }
    }

    /// The TLS handshake on `stream`, as the listener accepted it, finished by `deadline`
    /// (`None`: refused, counted).
    async fn handshake(
        &self,
        acceptor: &Acceptor,
        stream: Stream,
        deadline: tokio::time::Instant,
    ) -> Option<Stream> {
        let Ok(l4) = stream.into_any().downcast::<L4Stream>() else {
            tracing::error!("TLS listener handed a stream that is not a TCP connection");
            return None;
        };
        // Boxed: the handshake's state is freed when it ends instead of sizing the future that
        // lives as long as the connection.
        let handshake = Box::pin(acceptor.tls_handshake(*l4));
        match tokio::time::timeout_at(deadline, handshake).await {
            Ok(Ok(tls)) => Some(Box::new(tls)),
            Ok(Err(error)) => {
                tracing::debug!(%error, "TLS handshake failed");
                self.refused("tls_handshake");
                None
            }
            Err(_) => {
                tracing::debug!("TLS handshake not finished within header_timeout");
                self.refused("tls_handshake_timeout");
                None
            }
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
        // One header_timeout covers the TLS handshake and the first request head together.
        let deadline = tokio::time::Instant::now() + self.settings.header_timeout;
        let Some(_place) = self.open.enter(self.settings.max_connections) else {
            self.refused("max_connections");
            return None;
        };
        if let Some(policy) = &self.settings.proxy_protocol {
            let fd = stream.id();
            if let Err(error) = policy
                .accept(&mut *stream, fd, self.metrics.as_deref())
                .await
            {
                tracing::debug!(%error, "connection refused");
                return None;
            }
        }
        // The address the PROXY header named, or the peer's.
        let per_ip_max = (self.per_ip_max)();
        let _slot = match (per_ip_max, peer_ip(&stream)) {
            (Some(max), Some(ip)) => match self.per_ip.acquire(ip, max) {
                Some(slot) => Some(slot),
                None => {
                    self.refused("per_ip");
                    return None;
                }
            },
            _ => None,
        };
        let stream = match &self.tls {
            Some(acceptor) => self.handshake(acceptor, stream, deadline).await?,
            None => stream,
        };
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let stream: Stream = Box::new(HeadDeadline::new(stream, left, self.metrics.clone()));
        // The connection is served in a task of its own, sized to what serving it needs, which
        // takes the places along: this one (pingora's accept-side task, with room for the
        // handshake it ran, about 10 KiB) ends here instead of living as long as the connection,
        // an idle keep-alive or HTTP/2 connection or a WebSocket included.
        let inner = Arc::clone(&self.inner);
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let _places = (_place, _slot);
            // Every keep-alive request is served here so the places cover the whole life.
            let mut next = inner.process_new(stream, &shutdown).await;
            for _ in 0..u32::MAX {
                let Some(stream) = next else {
                    break;
                };
                next = inner.process_new(stream, &shutdown).await;
            }
        });
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
