//! An HTTP/2 connection: the settings ferrogate advertises ([`options`]: pingora's bounded header
//! list, [`DEFAULT_MAX_CONCURRENT_STREAMS`] streams at once, receive windows sized for uploads),
//! and the connection's own accept loop. Each stream is served by [`super::exchange`] in a task
//! of its own. A connection with no stream in flight for `idle_timeout`, and every connection when
//! the server shuts down, gets a GOAWAY and is driven on until it closes (streams the client
//! opened before seeing the GOAWAY are still served), for at most [`DRAIN_BOUND`] once nothing is
//! in flight, so a dead peer holds nothing; its socket then lingers ([`super::linger`]) so the
//! peer's answer to the GOAWAY never meets a reset. Streams refused as malformed are counted over the
//! connection's life: past [`MAX_REJECTED_STREAMS`] it is closed with ENHANCE_YOUR_CALM.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use pingora::protocols::http::v2::server::{handshake, H2Accept, H2Options, HttpSession};
use pingora::protocols::http::ServerSession;
use pingora::protocols::{Digest, Stream};
use pingora::server::ShutdownWatch;
use tokio::sync::Notify;

use super::exchange::{self, Ending};
use super::linger::Lingering;
use super::{Connection, ProxyApp};
use crate::config::model::MAX_H2_WINDOW;

/// Streams a client may have open at once (pingora's and HAProxy's default).
pub const DEFAULT_MAX_CONCURRENT_STREAMS: u32 = 100;
/// The largest decoded header list a client may send (pingora's default).
pub const DEFAULT_MAX_HEADER_LIST_SIZE: u32 = 64 * 1024;
/// Streams refused as malformed (forbidden bytes in the path, ambiguous length or authority)
/// before the whole connection is closed.
pub const MAX_REJECTED_STREAMS: usize = 10;
/// How long a closing connection with nothing in flight is driven on for its peer to end it.
pub const DRAIN_BOUND: Duration = Duration::from_secs(5);

type H2Connection = h2::server::Connection<Stream, Bytes>;

/// The HTTP/2 options of a proxy listener whose streams may each receive `stream_window` bytes
/// before a window update (`h2_window`). The connection's window is twice that, so one upload
/// never waits on the connection while another stream is busy; it is also the most request
/// body one connection can make ferrogate hold while its upstream is slow to read.
pub fn options(stream_window: u32) -> H2Options {
    let stream_window = stream_window.min(MAX_H2_WINDOW);
    let mut options = H2Options::default();
    options
        .max_header_list_size(DEFAULT_MAX_HEADER_LIST_SIZE)
        .max_concurrent_streams(DEFAULT_MAX_CONCURRENT_STREAMS)
        .initial_window_size(stream_window)
        .initial_connection_window_size(stream_window * 2);
    options
}

// RFC 9113 §6.9.2: a window above 2^31-1 is a flow-control error. (The integration tests
// check what a client is granted.)
const _: () = assert!(MAX_H2_WINDOW as u64 * 2 < 1 << 31);

/// Streams in flight on one connection.
#[derive(Default)]
struct InFlight {
    count: AtomicUsize,
    idle: Notify,
}

/// One stream's place in [`InFlight`], given back on drop.
struct StreamPlace(Arc<InFlight>);

impl InFlight {
    fn enter(self: &Arc<Self>) -> StreamPlace {
        self.count.fetch_add(1, Ordering::AcqRel);
        StreamPlace(self.clone())
    }

    /// Resolves once no stream has been in flight for `quiet`.
    async fn quiet_for(&self, quiet: Duration) {
        while self.count.load(Ordering::Acquire) != 0 {
            self.idle.notified().await;
        }
        tokio::time::sleep(quiet).await;
    }
}

impl Drop for StreamPlace {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_one();
        }
    }
}

/// Why the accept loop stopped taking new streams normally.
enum Closing {
    Idle,
    Shutdown,
    Abuse,
}

/// Serves an HTTP/2 connection until it closes.
pub async fn serve(
    app: &Arc<ProxyApp>,
    stream: Stream,
    conn: Connection,
    mut shutdown: ShutdownWatch,
) {
    let digest = Arc::new(Digest {
        ssl_digest: stream.get_ssl_digest(),
        timing_digest: stream.get_timing_digest(),
        proxy_digest: stream.get_proxy_digest(),
        socket_digest: stream.get_socket_digest(),
    });
    let stream = Lingering::wrap(stream);
    let mut h2 = match handshake(stream, Some(app.h2_options.clone())).await {
        Ok(h2) => h2,
        Err(error) => {
            tracing::debug!(%error, "h2 handshake failed");
            return;
        }
    };
    let conn = Arc::new(conn);
    let in_flight = Arc::new(InFlight::default());
    let mut rejected = 0usize;
    let closing = loop {
        if *shutdown.borrow() {
            break Closing::Shutdown;
        }
        tokio::select! {
            biased;
            _ = shutdown.changed() => break Closing::Shutdown,
            accepted = HttpSession::from_h2_conn(&mut h2, digest.clone()) => match accepted {
                Ok(Some(H2Accept::Session(session))) => {
                    spawn_stream(app, &conn, session, in_flight.enter());
                }
                Ok(Some(H2Accept::Rejected)) => {
                    rejected += 1;
                    if rejected >= MAX_REJECTED_STREAMS {
                        break Closing::Abuse;
                    }
                }
                // Closed by the client, or broken.
                Ok(None) | Err(_) => return,
            },
            _ = in_flight.quiet_for(app.limits.idle_timeout) => break Closing::Idle,
        }
    };
    match closing {
        Closing::Idle | Closing::Shutdown => h2.graceful_shutdown(),
        Closing::Abuse => {
            tracing::debug!(
                rejected,
                "closing an h2 connection after too many malformed streams"
            );
            h2.abrupt_shutdown(h2::Reason::ENHANCE_YOUR_CALM);
        }
    }
    drain(app, &conn, &mut h2, &digest, &in_flight).await;
}

/// Drives a connection that was told to go away until it closes, serving the streams the client
/// opened before it saw the GOAWAY; gives up [`DRAIN_BOUND`] after the last stream ended.
async fn drain(
    app: &Arc<ProxyApp>,
    conn: &Arc<Connection>,
    h2: &mut H2Connection,
    digest: &Arc<Digest>,
    in_flight: &Arc<InFlight>,
) {
    loop {
        tokio::select! {
            accepted = HttpSession::from_h2_conn(h2, digest.clone()) => match accepted {
                Ok(Some(H2Accept::Session(session))) => {
                    spawn_stream(app, conn, session, in_flight.enter());
                }
                Ok(Some(H2Accept::Rejected)) => {}
                Ok(None) | Err(_) => return,
            },
            _ = in_flight.quiet_for(DRAIN_BOUND) => return,
        }
    }
}

/// Serves one stream in a task of its own. The stream's state is boxed once, by the task itself:
/// tokio copies a task's whole future when it is spawned, when it completes and when its output
/// is stored, and an exchange's state is many kilobytes.
fn spawn_stream(
    app: &Arc<ProxyApp>,
    conn: &Arc<Connection>,
    session: HttpSession,
    place: StreamPlace,
) {
    let (app, conn) = (app.clone(), conn.clone());
    tokio::spawn(async move {
        // Written straight into its allocation: `Box::pin(future)` builds the whole state on the
        // stack first and copies it, every byte of it, though only the arguments are set yet.
        let stream = Box::write(Box::new_uninit(), serve_stream(app, conn, session));
        Box::into_pin(stream).await;
        drop(place);
    });
}

/// One stream from its head to its end. The stream is ended through its own (HTTP/2) session:
/// nothing there waits, and pingora's `ServerSession::finish` is a future the size of its
/// largest kind of session (3.6 KiB) that every stream's state would carry.
async fn serve_stream(app: Arc<ProxyApp>, conn: Arc<Connection>, session: HttpSession) {
    let mut session = ServerSession::H2(session);
    let ending = exchange::serve(&app, &conn, &mut session, None, None).await;
    let ServerSession::H2(mut session) = session else {
        return;
    };
    match ending {
        Ending::Done | Ending::Close => {
            if let Err(error) = session.finish() {
                tracing::debug!(%error, "could not end an h2 stream");
            }
        }
        // An h2 stream is never upgraded; anything else ends it abruptly.
        Ending::Abort | Ending::Upgraded(_) => session.shutdown(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn in_flight_counts_streams_and_turns_quiet() {
        let in_flight = Arc::new(InFlight::default());
        let first = in_flight.enter();
        let second = in_flight.enter();
        assert_eq!(in_flight.count.load(Ordering::Acquire), 2);
        let quiet = in_flight.clone();
        let waiter = tokio::spawn(async move { quiet.quiet_for(Duration::ZERO).await });
        drop(first);
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        drop(second);
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("quiet once nothing is in flight")
            .expect("joined");
    }
}
