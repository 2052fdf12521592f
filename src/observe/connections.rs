//! Counting client connections: a pingora `ServerApp` wrapper that holds an open-connections gauge
//! for as long as a connection lives (all its keep-alive requests, or a whole HTTP/2 session).

use std::sync::Arc;

use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::protocols::Stream;
use pingora::server::ShutdownWatch;
use prometheus::{IntCounter, IntGauge};

use super::traffic::TrafficMetrics;

/// Wraps a listener's application; counts its connections under the listener's name.
pub struct CountedConnections<A> {
    inner: Arc<A>,
    handles: Option<(IntGauge, IntCounter)>,
}

impl<A> CountedConnections<A> {
    pub fn new(traffic: &TrafficMetrics, listener: &str, inner: A) -> Self {
        Self {
            inner: Arc::new(inner),
            handles: traffic.listener_handles(listener),
        }
    }
}

/// Decrements the open-connections gauge when the connection ends, however it ends.
struct Open(Option<IntGauge>);

impl Drop for Open {
    fn drop(&mut self) {
        if let Some(gauge) = &self.0 {
            gauge.dec();
        }
    }
}

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> ServerApp for CountedConnections<A> {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let _open = Open(self.handles.as_ref().map(|(open, accepted)| {
            accepted.inc();
            open.inc();
            open.clone()
        }));
        // The service would feed a reusable stream back to us; serve it here instead, so the
        // gauge covers the connection's whole life rather than one request at a time.
        let mut next = self.inner.process_new(stream, shutdown).await;
        while let Some(stream) = next {
            next = self.inner.process_new(stream, shutdown).await;
        }
        None
    }

    async fn cleanup(&self) {
        self.inner.cleanup().await;
    }
}
