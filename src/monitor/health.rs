//! The active health checker, a background service: every `interval`, for every upstream with a
//! `health` section in the current snapshot, one HTTP/1.1 `GET path` per server (with `timeout`),
//! over TLS with the upstream's own settings when it has `tls`, recorded into the server's
//! long-lived state. Reads the snapshot afresh each round, so a reload changes what is checked
//! without restarting anything.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::periodic;
use crate::config::model::ActiveHealth;
use crate::runtime::{SnapshotStore, UpstreamRuntime};
use crate::tls::upstream::ServerTls;

/// Longest sleep between two looks at the snapshot (so new upstreams are noticed soon).
pub const CHECKER_TICK: Duration = Duration::from_millis(250);
/// Bytes of the answer read to find the status line.
const STATUS_LINE_BYTES: usize = 256;

/// The active checker service.
pub struct HealthChecker {
    snapshots: Arc<SnapshotStore>,
}

impl HealthChecker {
    pub fn new(snapshots: Arc<SnapshotStore>) -> Self {
        Self { snapshots }
    }
}

#[async_trait]
impl BackgroundService for HealthChecker {
    async fn start(&self, shutdown: ShutdownWatch) {
        periodic::every_upstream(
            &self.snapshots,
            CHECKER_TICK,
            shutdown,
            |u| u.health.active.as_ref().map(|a| a.interval),
            |u| {
                if let Some(active) = &u.health.active {
                    check_upstream(u, active);
                }
            },
        )
        .await;
    }
}

/// One round of checks for every member of `upstream`, each on its own task.
fn check_upstream(upstream: &Arc<UpstreamRuntime>, active: &ActiveHealth) {
    for member in upstream.pool.members().iter() {
        if !member.state.begin_check() {
            continue;
        }
        let member = member.clone();
        let upstream = upstream.clone();
        let active = active.clone();
        tokio::spawn(async move {
            let tls = upstream.tls.as_deref();
            let result = probe(member.socket, &member.address, &active, tls).await;
            let ok = matches!(result, Ok(status) if healthy(status, active.expect_status));
            let changed = member
                .state
                .record_check(ok, &upstream.health, Instant::now());
            if changed {
                let verdict = if ok { "up" } else { "down" };
                match &result {
                    Ok(status) => {
                        tracing::warn!(upstream = %upstream.name, server = %member.address, status, verdict, "health check changed the server's state")
                    }
                    Err(error) => {
                        tracing::warn!(upstream = %upstream.name, server = %member.address, %error, verdict, "health check changed the server's state")
                    }
                }
            }
        });
    }
}

/// Whether a check's status means healthy: the expected one, or any 2xx/3xx.
pub fn healthy(status: u16, expect: Option<u16>) -> bool {
    match expect {
        Some(expected) => status == expected,
        None => (200..400).contains(&status),
    }
}

/// `GET path` on a fresh connection to the server written as `host` (https with `tls`); the
/// response's status code. A TLS failure (an unverified certificate) is a failed check.
pub async fn probe(
    socket: SocketAddr,
    host: &str,
    active: &ActiveHealth,
    tls: Option<&ServerTls>,
) -> Result<u16, String> {
    let exchange = async {
        let stream = TcpStream::connect(socket)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        match tls {
            None => exchange(stream, host, &active.path).await,
            Some(tls) => {
                let stream = tls_connect(tls, host, stream).await?;
                exchange(stream, host, &active.path).await
            }
        }
    };
    match tokio::time::timeout(active.timeout, exchange).await {
        Ok(result) => result,
        Err(_) => Err(format!("timed out after {:?}", active.timeout)),
    }
}

/// The TLS handshake with the server written as `address`, with its upstream's settings.
pub async fn tls_connect(
    tls: &ServerTls,
    address: &str,
    stream: TcpStream,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, String> {
    let config = tls
        .checker_config()
        .map_err(|e| format!("TLS settings: {e}"))?;
    let name = tls.rustls_server_name(address)?;
    tokio_rustls::TlsConnector::from(config.clone())
        .connect(name, stream)
        .await
        .map_err(|e| format!("TLS handshake: {e}"))
}

/// Sends the check's request on `stream` and reads the status line.
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    host: &str,
    path: &str,
) -> Result<u16, String> {
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: ferrogate-health\r\nConnection: close\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("write: {e}"))?;
    let mut buf = Vec::with_capacity(STATUS_LINE_BYTES);
    while !buf.contains(&b'\n') && buf.len() < STATUS_LINE_BYTES {
        let mut chunk = [0u8; STATUS_LINE_BYTES];
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    parse_status_line(&buf).ok_or_else(|| "no HTTP status line in the answer".to_string())
}

/// `HTTP/1.x NNN ...` → NNN.
fn parse_status_line(buf: &[u8]) -> Option<u16> {
    let line = buf.split(|b| *b == b'\n').next()?;
    let text = std::str::from_utf8(line).ok()?;
    let mut parts = text.split_whitespace();
    if !parts.next()?.starts_with("HTTP/1.") {
        return None;
    }
    parts
        .next()?
        .parse()
        .ok()
        .filter(|s| (100..600).contains(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines_and_verdicts() {
        assert_eq!(parse_status_line(b"HTTP/1.1 204 No Content\r\n"), Some(204));
        assert_eq!(parse_status_line(b"HTTP/1.0 503 x\r\n"), Some(503));
        assert_eq!(parse_status_line(b"SSH-2.0\r\n"), None);
        assert_eq!(parse_status_line(b"HTTP/1.1 abc\r\n"), None);
        assert!(healthy(200, None) && healthy(302, None) && !healthy(404, None));
        assert!(healthy(418, Some(418)) && !healthy(200, Some(204)));
    }

    #[tokio::test]
    async fn probes_a_real_server_and_a_closed_port() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            if let Ok((mut s, _)) = listener.accept().await {
                let mut buf = [0u8; 512];
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                    .await;
            }
        });
        let active = ActiveHealth {
            path: "/health".into(),
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(2),
            rise: 1,
            fall: 1,
            expect_status: None,
        };
        assert_eq!(probe(addr, "x", &active, None).await, Ok(200));
        drop(tokio::net::TcpListener::bind(addr).await);
        assert!(probe(addr, "x", &active, None).await.is_err());
    }
}
