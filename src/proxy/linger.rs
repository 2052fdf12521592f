//! Lingering close for HTTP/2 connections: the transport handed to pingora's h2 session, which,
//! when the session lets go of it (after its GOAWAY and its half-close), keeps reading and
//! discarding what the peer still sends until the peer closes, for at most [`LINGER`] and
//! [`LINGER_BYTES`]. Closing a socket outright while the peer is still answering the GOAWAY
//! (its own GOAWAY, a PING ACK, TLS close_notify) makes the kernel answer with a reset, and the
//! peer sees a broken pipe instead of a clean end; nginx's `lingering_close` exists for the same
//! reason.

use std::fmt;
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
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

/// How long a closed connection is read on for its peer to close its side.
pub const LINGER: Duration = Duration::from_secs(2);
/// The most bytes read and discarded while lingering.
pub const LINGER_BYTES: usize = 64 * 1024;

/// A transport that lingers when dropped (see the module's documentation).
pub struct Lingering(Option<Stream>);

impl Lingering {
    pub fn wrap(stream: Stream) -> Stream {
        Box::new(Self(Some(stream)))
    }

    /// The wrapped transport, or an error once it is gone (only the drop takes it).
    fn io(&mut self) -> std::io::Result<&mut Stream> {
        self.0
            .as_mut()
            .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::NotConnected))
    }
}

impl Drop for Lingering {
    fn drop(&mut self) {
        let Some(stream) = self.0.take() else { return };
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(linger(stream));
        }
    }
}

/// Reads and discards until the peer closes, an error, [`LINGER`] or [`LINGER_BYTES`].
async fn linger(mut stream: Stream) {
    let mut buf = [0u8; 4096];
    let mut read = 0usize;
    let _ = tokio::time::timeout(LINGER, async {
        while read < LINGER_BYTES {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => read += n,
            }
        }
    })
    .await;
}

impl fmt::Debug for Lingering {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Lingering").field(&self.0).finish()
    }
}

impl AsyncRead for Lingering {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(match self.io() {
            Ok(io) => io,
            Err(error) => return Poll::Ready(Err(error)),
        })
        .poll_read(cx, buf)
    }
}

impl AsyncWrite for Lingering {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(match self.io() {
            Ok(io) => io,
            Err(error) => return Poll::Ready(Err(error)),
        })
        .poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(match self.io() {
            Ok(io) => io,
            Err(error) => return Poll::Ready(Err(error)),
        })
        .poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.as_ref().is_some_and(|io| io.is_write_vectored())
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(match self.io() {
            Ok(io) => io,
            Err(error) => return Poll::Ready(Err(error)),
        })
        .poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(match self.io() {
            Ok(io) => io,
            Err(error) => return Poll::Ready(Err(error)),
        })
        .poll_shutdown(cx)
    }
}

#[async_trait]
impl Shutdown for Lingering {
    async fn shutdown(&mut self) {
        if let Some(io) = self.0.as_mut() {
            io.shutdown().await;
        }
    }
}

impl UniqueID for Lingering {
    fn id(&self) -> UniqueIDType {
        self.0.as_ref().map_or(0, |io| io.id())
    }
}

impl Ssl for Lingering {
    fn get_ssl(&self) -> Option<&TlsRef> {
        self.0.as_ref().and_then(|io| io.get_ssl())
    }

    fn get_ssl_digest(&self) -> Option<Arc<pingora::protocols::tls::SslDigest>> {
        self.0.as_ref().and_then(|io| io.get_ssl_digest())
    }

    fn selected_alpn_proto(&self) -> Option<ALPN> {
        self.0.as_ref().and_then(|io| io.selected_alpn_proto())
    }
}

impl GetTimingDigest for Lingering {
    fn get_timing_digest(&self) -> Vec<Option<TimingDigest>> {
        self.0
            .as_ref()
            .map(|io| io.get_timing_digest())
            .unwrap_or_default()
    }

    fn get_read_pending_time(&self) -> Duration {
        self.0
            .as_ref()
            .map(|io| io.get_read_pending_time())
            .unwrap_or_default()
    }

    fn get_write_pending_time(&self) -> Duration {
        self.0
            .as_ref()
            .map(|io| io.get_write_pending_time())
            .unwrap_or_default()
    }
}

impl GetProxyDigest for Lingering {
    fn get_proxy_digest(&self) -> Option<Arc<ProxyDigest>> {
        self.0.as_ref().and_then(|io| io.get_proxy_digest())
    }

    fn set_proxy_digest(&mut self, digest: ProxyDigest) {
        if let Some(io) = self.0.as_mut() {
            io.set_proxy_digest(digest);
        }
    }
}

impl GetSocketDigest for Lingering {
    fn get_socket_digest(&self) -> Option<Arc<SocketDigest>> {
        self.0.as_ref().and_then(|io| io.get_socket_digest())
    }

    fn set_socket_digest(&mut self, digest: SocketDigest) {
        if let Some(io) = self.0.as_mut() {
            io.set_socket_digest(digest);
        }
    }
}

#[async_trait]
impl Peek for Lingering {
    async fn try_peek(&mut self, buf: &mut [u8]) -> std::io::Result<bool> {
        self.io()?.try_peek(buf).await
    }
}
