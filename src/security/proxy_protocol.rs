//! PROXY protocol on a listener: reads the header off a new connection (exactly its bytes, never
//! more), refuses peers outside `proxy_protocol_from`, and replaces the connection's peer address
//! with the one the header names, so logs, rate limits, access lists, client_ip stickiness and
//! X-Forwarded-For all see the real client. [`super::gate::ConnectionGate`] runs it before the
//! TLS handshake and before HTTP parsing.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use pingora::protocols::l4::socket::SocketAddr as PeerAddr;
use pingora::protocols::{GetSocketDigest, SocketDigest};
use pingora::{Error, ErrorType, Result};
use tokio::io::{AsyncRead, AsyncReadExt};

use super::metrics::SecurityMetrics;
use super::proxy_header::{parse, ProxyError, ProxyHeader, Step, V1_MAX_LEN};
use crate::config::model::Cidr;

/// How long a new connection may take to send its PROXY header.
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// One listener's PROXY protocol policy.
#[derive(Debug, Clone)]
pub struct ProxyProtocol {
    from: Arc<[Cidr]>,
    timeout: Duration,
}

impl ProxyProtocol {
    pub fn new(from: &[Cidr]) -> Self {
        Self {
            from: from.into(),
            timeout: DEFAULT_HEADER_TIMEOUT,
        }
    }

    /// Checks the peer, reads the header and rewrites the socket digest of `stream`.
    /// Refusals are counted in `metrics`.
    pub async fn accept<S>(
        &self,
        stream: &mut S,
        fd: i32,
        metrics: Option<&SecurityMetrics>,
    ) -> Result<()>
    where
        S: AsyncRead + GetSocketDigest + Unpin + ?Sized,
    {
        let digest = stream.get_socket_digest();
        let peer = digest
            .as_ref()
            .and_then(|d| d.peer_addr())
            .and_then(|a| a.as_inet())
            .map(|a| a.ip());
        if !peer.is_some_and(|ip| self.trusts(ip)) {
            if let Some(metrics) = metrics {
                metrics.proxy_protocol_refused("untrusted_peer");
            }
            return Error::e_explain(
                ErrorType::AcceptError,
                "PROXY protocol: peer is not in proxy_protocol_from",
            );
        }
        let header = match tokio::time::timeout(self.timeout, read_header(stream)).await {
            Ok(Ok(header)) => header,
            Ok(Err(why)) => {
                if let Some(metrics) = metrics {
                    metrics.proxy_protocol_refused("invalid");
                }
                return Error::e_explain(ErrorType::AcceptError, why);
            }
            Err(_) => {
                if let Some(metrics) = metrics {
                    metrics.proxy_protocol_refused("timeout");
                }
                return Error::e_explain(ErrorType::AcceptError, "PROXY protocol: header timeout");
            }
        };
        if let Some(source) = header.source {
            let replaced = SocketDigest::from_raw_fd(fd);
            let _ = replaced.peer_addr.set(Some(PeerAddr::Inet(source)));
            if let Some(local) = digest.as_ref().and_then(|d| d.local_addr()) {
                let _ = replaced.local_addr.set(Some(local.clone()));
            }
            stream.set_socket_digest(replaced);
        }
        Ok(())
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        self.from.iter().any(|range| range.contains(ip))
    }
}

/// Reads exactly one PROXY header from `stream`.
async fn read_header<S: AsyncRead + Unpin + ?Sized>(stream: &mut S) -> Result<ProxyHeader, String> {
    let mut buf = Vec::with_capacity(V1_MAX_LEN + 1);
    // Bounded: v1 asks for at most one byte per step up to its 107-byte limit; v2 for 3 steps.
    for _ in 0..=V1_MAX_LEN {
        match parse(&buf) {
            Ok(Step::Done(header)) => return Ok(header),
            Ok(Step::More(n)) => {
                let start = buf.len();
                buf.resize(start + n, 0);
                stream
                    .read_exact(&mut buf[start..])
                    .await
                    .map_err(|e| format!("PROXY protocol: reading the header: {e}"))?;
            }
            Err(ProxyError::Missing) => {
                return Err(
                    "PROXY protocol: the connection did not start with a PROXY header".into(),
                )
            }
            Err(ProxyError::Invalid(why)) => return Err(format!("PROXY protocol: {why}")),
        }
    }
    Err("PROXY protocol: header not finished".into())
}
