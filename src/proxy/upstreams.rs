//! Connections to servers: pingora's transport connector with its pool of idle connections, and
//! the one idle connection an HTTP/1 client connection keeps for its next request ([`Kept`]).
//! A keep-alive client's next request to the same server takes that connection straight back
//! instead of a round trip through the shared pool (a lock, an `Arc<Mutex>` and a watcher task
//! spawned, woken and joined per request); it goes to the pool when a request picks another
//! server, when the client has sent nothing for a second, and when the client connection ends.
//! A kept connection the server closed or wrote to meanwhile is noticed before use and dropped,
//! as the pool does.

use futures_util::FutureExt;
use pingora::connectors::{ConnectorOptions, TransportConnector};
use pingora::protocols::http::v1::client::HttpSession;
use pingora::protocols::Stream;
use pingora::server::configuration::ServerConf;
use pingora::upstreams::peer::Peer;
use tokio::io::{AsyncRead, AsyncReadExt};

use super::DEFAULT_UPSTREAM_POOL_IDLE;

/// pingora's connector and pool, shared by every listener.
pub struct Upstreams {
    transport: TransportConnector,
}

impl Upstreams {
    /// The connector and pool sized by the server configuration.
    pub fn new(conf: &ServerConf) -> Self {
        Self {
            transport: TransportConnector::new(Some(ConnectorOptions::from_server_conf(conf))),
        }
    }

    /// A session to `peer` (whose pool key is `key`): the client connection's kept connection
    /// when it goes to that server and is still open, else an idle pooled one, else a new one.
    /// `true` when the connection was used before.
    pub async fn session<P: Peer + Send + Sync + 'static>(
        &self,
        peer: &P,
        key: u64,
        kept: Option<&mut Kept>,
    ) -> pingora::Result<(HttpSession, bool)> {
        if let Some(stream) = kept.and_then(|kept| self.take_kept(kept, key)) {
            return Ok((HttpSession::new_with_options(stream, peer), true));
        }
        let (stream, reused) = self.transport.get_stream(peer).await?;
        Ok((HttpSession::new_with_options(stream, peer), reused))
    }

    /// Takes a finished session's connection back for reuse (when both messages allow it): into
    /// `kept` when the client connection keeps one, else into the pool.
    pub async fn release(&self, mut session: HttpSession, key: u64, kept: Option<&mut Kept>) {
        session.respect_keepalive();
        let Some(stream) = session.reuse().await else {
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

    fn pool(&self, stream: Stream, key: u64) {
        self.transport
            .release_stream(stream, key, Some(DEFAULT_UPSTREAM_POOL_IDLE));
    }

    /// The kept connection when it goes to `key`'s server and is still open; one to another
    /// server goes to the pool.
    fn take_kept(&self, kept: &mut Kept, key: u64) -> Option<Stream> {
        let (kept_key, mut stream) = kept.0.take()?;
        if kept_key != key {
            self.pool(stream, kept_key);
            return None;
        }
        (idle_state(&mut stream) == Idle::Open).then_some(stream)
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
