//! An upgraded connection (a WebSocket after its 101): the client's and the server's streams
//! taken out of their HTTP sessions, with any bytes either session had already read past the
//! handshake (a client may send its first frames right behind the request; servers often send
//! theirs in the same segment as the 101) forwarded first, then copied both ways until either side
//! closes or `websocket_idle` passes without traffic. An idle tunnel holds no copy buffer: each
//! read goes into stack space while it is polled and what it got into bytes of their own until
//! they are written. Nothing of the request is kept meanwhile but what its access line and
//! metrics need at the end.

use std::future::poll_fn;
use std::io;
use std::mem::MaybeUninit;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::FutureExt;
use http::Method;
use pingora::protocols::http::v1::server::HttpSession;
use pingora::protocols::Stream;
use tokio::io::{AsyncRead, AsyncWriteExt, ReadBuf};

use super::attempt::Attempt;
use super::ProxyApp;
use crate::lifecycle::ActiveGuard;
use crate::observe::{Finish, RequestObs, RouteObserver};
use crate::pool::Pick;

/// The most one read of a tunnel takes at once.
pub const TUNNEL_READ: usize = 16 * 1024;
/// Reads of what a session already buffered, at most, before its stream is taken.
const EARLY_READS: usize = 16;

/// What the access line and the metrics of an upgraded request need when the tunnel ends.
pub struct TunnelRecord {
    pub app: Arc<ProxyApp>,
    pub obs: RequestObs,
    pub client: Option<IpAddr>,
    pub method: Method,
    pub path: Box<str>,
    pub started: Instant,
    pub observer: Arc<RouteObserver>,
    pub server: Arc<str>,
    /// The server's in-flight slot, held while the tunnel lives.
    pub pick: Pick,
    /// `websocket_idle` of the upstream.
    pub idle: Duration,
    pub active: ActiveGuard,
}

/// A 101 was relayed: the server's connection and the record of the request.
pub struct Upgraded {
    pub attempt: Attempt,
    pub record: TunnelRecord,
}

/// Why a tunnel ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Closed,
    Idle,
    Broken,
}

/// A running tunnel.
pub struct Tunnel {
    client: Stream,
    server: Stream,
    /// Read from the client with or behind its request, for the server.
    to_server: Vec<Bytes>,
    /// Read from the server with or behind its 101, for the client.
    to_client: Vec<Bytes>,
    bytes_in: usize,
    bytes_out: usize,
    record: TunnelRecord,
}

/// What one look at a session's buffered bytes gave.
enum Early {
    /// More may be buffered.
    More,
    /// Nothing more without waiting.
    Done,
    /// The peer closed.
    Closed,
}

/// Takes one read's result of what a session holds past the handshake, polled once without
/// waiting (nothing is lost: a pending read consumed nothing).
fn take_early(read: Option<pingora::Result<Option<Bytes>>>, into: &mut Vec<Bytes>) -> Early {
    match read {
        Some(Ok(Some(chunk))) => {
            if !chunk.is_empty() {
                into.push(chunk);
            }
            Early::More
        }
        Some(Ok(None)) | Some(Err(_)) => Early::Closed,
        None => Early::Done,
    }
}

impl Tunnel {
    /// The tunnel between `client` (which got the 101) and the upgraded server connection;
    /// `None` when a side already closed (the request is then recorded as ended).
    pub fn start(mut client: HttpSession, upgraded: Upgraded) -> Option<Self> {
        let Upgraded {
            mut attempt,
            record,
        } = upgraded;
        let mut to_server = Vec::new();
        let mut to_client = Vec::new();
        let mut open = true;
        for _ in 0..EARLY_READS {
            match take_early(client.read_body_bytes().now_or_never(), &mut to_server) {
                Early::More => {}
                Early::Done => break,
                Early::Closed => {
                    open = false;
                    break;
                }
            }
        }
        for _ in 0..EARLY_READS {
            if !open {
                break;
            }
            match take_early(
                attempt.session.read_body_bytes().now_or_never(),
                &mut to_client,
            ) {
                Early::More => {}
                Early::Done => break,
                Early::Closed => {
                    open = false;
                    break;
                }
            }
        }
        let bytes_in = client.body_bytes_read();
        let bytes_out = client.body_bytes_sent();
        if !open {
            record.finish(bytes_in, bytes_out, End::Closed);
            return None;
        }
        Some(Self {
            client: client.into_inner(),
            server: attempt.session.into_inner(),
            to_server,
            to_client,
            bytes_in,
            bytes_out,
            record,
        })
    }

    /// Copies both ways until a side closes or the tunnel is idle for `websocket_idle`.
    pub async fn run(mut self) {
        let end = self.copy().await;
        let _ = self.client.shutdown().await;
        let _ = self.server.shutdown().await;
        self.record.finish(self.bytes_in, self.bytes_out, end);
    }

    async fn copy(&mut self) -> End {
        for chunk in std::mem::take(&mut self.to_server) {
            if write_all(&mut self.server, &chunk).await.is_err() {
                return End::Broken;
            }
        }
        for chunk in std::mem::take(&mut self.to_client) {
            if write_all(&mut self.client, &chunk).await.is_err() {
                return End::Broken;
            }
            self.bytes_out += chunk.len();
        }
        let idle = self.record.idle;
        let timer = tokio::time::sleep(idle);
        tokio::pin!(timer);
        loop {
            tokio::select! {
                read = read_chunk(&mut self.client) => {
                    let chunk = match read {
                        Ok(chunk) if chunk.is_empty() => return End::Closed,
                        Ok(chunk) => chunk,
                        Err(_) => return End::Broken,
                    };
                    if write_all(&mut self.server, &chunk).await.is_err() {
                        return End::Broken;
                    }
                    self.bytes_in += chunk.len();
                }
                read = read_chunk(&mut self.server) => {
                    let chunk = match read {
                        Ok(chunk) if chunk.is_empty() => return End::Closed,
                        Ok(chunk) => chunk,
                        Err(_) => return End::Broken,
                    };
                    if write_all(&mut self.client, &chunk).await.is_err() {
                        return End::Broken;
                    }
                    self.bytes_out += chunk.len();
                }
                _ = &mut timer => return End::Idle,
            }
            timer.as_mut().reset(tokio::time::Instant::now() + idle);
        }
    }
}

/// The next bytes `stream` has, at most [`TUNNEL_READ`]; empty when it closed. They are read
/// into stack space while the read is polled, so a tunnel waiting on its peers holds no buffer
/// (a pending read consumed nothing, which also makes this safe to drop at any point).
async fn read_chunk(stream: &mut Stream) -> io::Result<Bytes> {
    poll_fn(|cx| {
        let mut space = [MaybeUninit::<u8>::uninit(); TUNNEL_READ];
        let mut buf = ReadBuf::uninit(&mut space);
        ready!(Pin::new(&mut *stream).poll_read(cx, &mut buf))?;
        Poll::Ready(Ok(Bytes::copy_from_slice(buf.filled())))
    })
    .await
}

/// Writes and flushes (pingora's streams buffer writes).
async fn write_all(stream: &mut Stream, bytes: &[u8]) -> std::io::Result<()> {
    stream.write_all(bytes).await?;
    stream.flush().await
}

impl TunnelRecord {
    /// Counts the request and writes its access line (status 101).
    fn finish(mut self, bytes_in: usize, bytes_out: usize, end: End) {
        let done = Finish {
            listener: &self.app.listener,
            client: self.client,
            method: self.method.as_str(),
            path: &self.path,
            status: 101,
            bytes_in,
            bytes_out,
            error: match end {
                End::Closed => None,
                End::Idle => Some("IdleTimeout"),
                End::Broken => Some("ConnectionBroken"),
            },
            started: self.started,
            route: Some(&self.observer),
            server: Some(&self.server),
            unrouted: &self.app.live.observe.unrouted,
        };
        self.obs.finish(done);
        drop(self.pick);
        drop(self.active);
    }
}
