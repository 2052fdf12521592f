//! Connections to servers: pingora's transport connector opens them; idle ones wait for reuse in
//! a pool of the worker thread's own ([`IdlePool`]), and an HTTP/1 client connection keeps its
//! last one for its next request ([`Kept`]). A keep-alive client's next request to the same
//! server takes that connection straight back; it goes to the thread's pool when a request picks
//! another server, when the client has sent nothing for a second, and when the client connection
//! ends. Each worker thread serves its connections start to end, so its pool needs no lock and no
//! watcher task per connection (pingora's shared pool spawns one per pooled connection, and can
//! lose a connection to a race between threads, pingora issue #998); one sweeper task per thread
//! closes what idled out or the server closed. A pooled or kept connection the server closed or
//! wrote to meanwhile is noticed before use and dropped.

use std::cell::RefCell;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use pingora::connectors::{ConnectorOptions, TransportConnector};
use pingora::protocols::http::v1::client::HttpSession;
use pingora::protocols::Stream;
use pingora::server::configuration::ServerConf;
use pingora::upstreams::peer::Peer;
use thread_local::ThreadLocal;
use tokio::io::{AsyncRead, AsyncReadExt};

use super::idle_pool::IdlePool;
use super::DEFAULT_UPSTREAM_POOL_IDLE;

/// How often a worker thread's sweeper looks over its idle connections.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// One worker thread's idle connections, and whether its sweeper runs.
struct ThreadIdle {
    pool: IdlePool<Stream>,
    sweeping: bool,
}

type Pools = Arc<ThreadLocal<RefCell<ThreadIdle>>>;

/// pingora's connector, and each worker thread's pool of idle connections; shared by every
/// listener.
pub struct Upstreams {
    transport: TransportConnector,
    pools: Pools,
    /// Idle connections each thread keeps at most.
    capacity: usize,
}

impl Upstreams {
    /// The connector, its per-thread pools sized by `upstream_keepalive_pool_size`.
    pub fn new(conf: &ServerConf) -> Self {
        Self {
            transport: TransportConnector::new(Some(ConnectorOptions::from_server_conf(conf))),
            pools: Arc::default(),
            capacity: conf.upstream_keepalive_pool_size,
        }
    }

    /// A session to `peer` (whose pool key is `key`): the client connection's kept connection
    /// when it goes to that server and is still open, else an idle one from this thread's pool,
    /// else a new one. `true` when the connection was used before.
    pub async fn session<P: Peer + Send + Sync + 'static>(
        &self,
        peer: &P,
        key: u64,
        kept: Option<&mut Kept>,
    ) -> pingora::Result<(HttpSession, bool)> {
        if let Some(stream) = kept.and_then(|kept| self.take_kept(kept, key)) {
            return Ok((HttpSession::new_with_options(stream, peer), true));
        }
        if let Some(stream) = self.take_pooled(peer, key) {
            return Ok((HttpSession::new_with_options(stream, peer), true));
        }
        // Boxed: connecting (TCP, then TLS for an https server) is a future of about 8 KiB that
        // would otherwise size every request's state, and is needed only for a new connection.
        let stream = Box::pin(self.transport.new_stream(peer)).await?;
        Ok((HttpSession::new_with_options(stream, peer), false))
    }

    /// Takes a finished session's connection back for reuse (when both messages allow it): into
    /// `kept` when the client connection keeps one, else into the pool. Not async: pingora's
    /// `reuse` waits only to shut down a connection it will not keep, which is closed here when
    /// that shutdown cannot finish at once (a full send buffer) and is dropped instead. Awaited,
    /// it would add about 2 KiB to every request's state.
    pub fn release(&self, mut session: HttpSession, key: u64, kept: Option<&mut Kept>) {
        session.respect_keepalive();
        let Some(Some(stream)) = session.reuse().now_or_never() else {
            return;
        };
        match kept {
            Some(kept) => {
                if let Some((key, stream)) = kept.0.replace((key, stream)) {
                    self.pool(stream, key);
                }
            }
            None => self.pool(stream, key),
        }
    }

    /// Gives a client connection's kept connection to the pool (the client connection ends).
    pub fn give_back(&self, kept: &mut Kept) {
        if let Some((key, stream)) = kept.0.take() {
            self.pool(stream, key);
        }
    }

    /// This thread's pool.
    fn thread_pool(&self) -> &RefCell<ThreadIdle> {
        self.pools.get_or(|| {
            RefCell::new(ThreadIdle {
                pool: IdlePool::new(self.capacity, DEFAULT_UPSTREAM_POOL_IDLE),
                sweeping: false,
            })
        })
    }

    /// The most recently pooled open connection to `peer` on this thread.
    fn take_pooled<P: Peer>(&self, peer: &P, key: u64) -> Option<Stream> {
        let mut idle = self.thread_pool().borrow_mut();
        idle.pool.take(key, Instant::now(), |stream| {
            peer.matches_fd(stream.id()) && still_open(stream)
        })
    }

    /// Files an idle connection in this thread's pool, and starts the thread's sweeper when it
    /// is not running. Outside a runtime (nothing to sweep with) the connection is closed.
    fn pool(&self, stream: Stream, key: u64) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let start_sweeper = {
            let mut idle = self.thread_pool().borrow_mut();
            idle.pool.put(key, stream, Instant::now());
            !std::mem::replace(&mut idle.sweeping, true)
        };
        if start_sweeper {
            runtime.spawn(sweep(self.pools.clone()));
        }
    }

    /// The kept connection when it goes to `key`'s server and is still open; one to another
    /// server goes to the pool.
    fn take_kept(&self, kept: &mut Kept, key: u64) -> Option<Stream> {
        let (kept_key, mut stream) = kept.0.take()?;
        if kept_key != key {
            self.pool(stream, kept_key);
            return None;
        }
        still_open(&mut stream).then_some(stream)
    }
}

/// A worker thread's sweeper: every [`SWEEP_EVERY`], closes the thread's idle connections that
/// idled out or that the server closed; ends when the pool is empty (the next connection pooled
/// starts another). Worker runtimes are single-threaded, so it stays on the thread whose pool
/// it sweeps.
async fn sweep(pools: Pools) {
    loop {
        tokio::time::sleep(SWEEP_EVERY).await;
        let Some(cell) = pools.get() else {
            return;
        };
        let mut idle = cell.borrow_mut();
        idle.pool.sweep(Instant::now(), still_open);
        if idle.pool.is_empty() {
            idle.sweeping = false;
            return;
        }
    }
}

/// The idle connection an HTTP/1 client connection keeps between its requests, with its pool
/// key. Empty for HTTP/2 clients (their streams run at once) and after an upgrade.
#[derive(Default)]
pub struct Kept(Option<(u64, Stream)>);

impl Kept {
    /// Whether a connection is kept.
    pub fn is_some(&self) -> bool {
        self.0.is_some()
    }
}

/// Whether an idle connection can still carry a request (see [`idle_state`]).
fn still_open(stream: &mut Stream) -> bool {
    idle_state(stream) == Idle::Open
}

/// What an idle connection to a server looks like just before reuse.
#[derive(Debug, PartialEq, Eq)]
enum Idle {
    /// Nothing to read: the server still waits for a request.
    Open,
    /// The server closed it (or it broke).
    Closed,
    /// The server sent something unasked: the connection cannot carry a request.
    UnexpectedData,
}

/// Looks at an idle connection without waiting: a server never speaks first on an idle
/// HTTP/1 connection, so anything readable (data or end of stream) means it cannot be used.
/// Polled outside the task's cooperative budget, which could otherwise answer "not yet" for a
/// socket that has something to read.
fn idle_state<S: AsyncRead + Unpin>(stream: &mut S) -> Idle {
    let mut byte = [0u8; 1];
    match tokio::task::unconstrained(stream.read(&mut byte)).now_or_never() {
        None => Idle::Open,
        Some(Ok(0) | Err(_)) => Idle::Closed,
        Some(Ok(_)) => Idle::UnexpectedData,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn an_idle_connection_is_open_until_the_server_speaks_or_closes() {
        let (mut client, mut server) = tokio::io::duplex(64);
        assert_eq!(idle_state(&mut client), Idle::Open);
        server.write_all(b"x").await.unwrap();
        assert_eq!(idle_state(&mut client), Idle::UnexpectedData);
        let (mut client, server) = tokio::io::duplex(64);
        drop(server);
        assert_eq!(idle_state(&mut client), Idle::Closed);
    }
}
