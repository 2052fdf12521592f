//! `header_timeout`: a connection's first request head must be complete (its blank line read)
//! within the listener's limit, however slowly the bytes trickle in. pingora times each read, not
//! the whole head, so a client sending one byte a minute would hold the connection forever;
//! [`HeadDeadline`] wraps the stream and fails reads once the deadline passes before the head's
//! end was seen. After that it only passes bytes through; later requests on the connection wait
//! under the idle keep-alive timeout.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use pingora::protocols::raw_connect::ProxyDigest;
use pingora::protocols::tls::TlsRef;
use pingora::protocols::{
    GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, SocketDigest, Ssl, Stream,
    TimingDigest, UniqueID, UniqueIDType, ALPN,
};
use std::future::Future;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

use super::metrics::SecurityMetrics;

/// Finds the end of a request head (`\r\n\r\n`, or a bare `\n\n`) across reads.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct HeadEnd {
    /// The last bytes seen: how far into a line end we are.
    state: u8,
}

impl HeadEnd {
    /// Feeds `bytes`; true once a head end was seen.
    pub fn feed(&mut self, bytes: &[u8]) -> bool {
        for &b in bytes {
            self.state = match (self.state, b) {
                (_, b'\n') if self.state >= 1 => return true,
                (_, b'\n') => 1,
                (1, b'\r') => 1,
                (_, b'\r') => self.state,
                _ => 0,
            };
        }
        false
    }
}

/// A stream whose reads fail with `TimedOut` once its deadline passed before the first request
/// head ended.
#[derive(Debug)]
pub struct HeadDeadline {
    inner: Stream,
    /// `None` once the head ended.
    deadline: Option<Pin<Box<Sleep>>>,
    head: HeadEnd,
    /// Where a stalled head is counted.
    metrics: Option<Arc<SecurityMetrics>>,
}

impl HeadDeadline {
    pub fn new(inner: Stream, limit: Duration, metrics: Option<Arc<SecurityMetrics>>) -> Self {
        Self {
            inner,
            deadline: Some(Box::pin(tokio::time::sleep(limit))),
            head: HeadEnd::default(),
            metrics,
        }
    }
}

impl AsyncRead for HeadDeadline {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        if let Some(deadline) = this.deadline.as_mut() {
            if deadline.as_mut().poll(cx).is_ready() {
                if let Some(metrics) = &this.metrics {
                    metrics.connection_refused("header_timeout");
                }
                return Poll::Ready(Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "request head not complete within header_timeout",
                )));
            }
        }
        let before = buf.filled().len();
        let result = Pin::new(&mut this.inner).poll_read(cx, buf);
        if this.deadline.is_some() && this.head.feed(&buf.filled()[before..]) {
            this.deadline = None;
        }
        result
    }
}

impl AsyncWrite for HeadDeadline {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[async_trait]
impl Shutdown for HeadDeadline {
    async fn shutdown(&mut self) {
        self.inner.shutdown().await;
    }
}

impl UniqueID for HeadDeadline {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

impl Ssl for HeadDeadline {
    fn get_ssl(&self) -> Option<&TlsRef> {
        self.inner.get_ssl()
    }

    fn get_ssl_digest(&self) -> Option<Arc<pingora::protocols::tls::SslDigest>> {
        self.inner.get_ssl_digest()
    }

    fn selected_alpn_proto(&self) -> Option<ALPN> {
        self.inner.selected_alpn_proto()
    }
}

impl GetTimingDigest for HeadDeadline {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.inner.get_timing_digest()
    }

    fn get_read_pending_time(&self) -> Duration {
        self.inner.get_read_pending_time()
    }

    fn get_write_pending_time(&self) -> Duration {
        self.inner.get_write_pending_time()
    }
}

impl GetProxyDigest for HeadDeadline {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        self.inner.get_proxy_digest()
    }

    fn set_proxy_digest(&mut self, digest: ProxyDigest) {
        self.inner.set_proxy_digest(digest);
    }
}

impl GetSocketDigest for HeadDeadline {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.inner.get_socket_digest()
    }

    fn set_socket_digest(&mut self, digest: SocketDigest) {
        self.inner.set_socket_digest(digest);
    }
}

#[async_trait]
impl Peek for HeadDeadline {
    async fn try_peek(&mut self, buf: &mut [u8]) -> std::io::Result<bool> {
        self.inner.try_peek(buf).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_ends_are_found_across_reads() {
        let mut end = HeadEnd::default();
        assert!(!end.feed(b"GET / HTTP/1.1\r\nHost: a\r"));
        assert!(!end.feed(b"\nX: y\r\n\r"));
        assert!(end.feed(b"\n"));
        let mut bare = HeadEnd::default();
        assert!(bare.feed(b"GET / HTTP/1.0\n\n"));
        let mut partial = HeadEnd::default();
        assert!(!partial.feed(b"a\r\nb\r\nc\rd\r\n"));
        let mut empty = HeadEnd::default();
        assert!(!empty.feed(b""));
    }
}
