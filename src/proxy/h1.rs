//! An HTTP/1 connection: reads each request head (the first within `header_timeout`, watched by
//! the connection gate; the next ones within `idle_timeout`), refuses malformed heads (400 and
//! close), oversized heads (431) and ambiguous framing ([`super::framing`]),
//! hands the request to [`super::exchange`], and reuses the connection only when the exchange
//! ended cleanly. A client closing an idle keep-alive connection is no error; a server shutdown
//! closes idle connections and lets the request in progress finish with `Connection: close`.
//! The connection keeps its last server connection for its next request ([`Kept`]) and gives it
//! to the shared pool when it ends. Pipelined requests (RFC 9112 §9.3.2: a client sending its
//! next request before the answer to the last) are answered one after another, in order: bytes
//! of the next request read with or after the current one are handed to the next request's
//! session.

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use http::header::TRANSFER_ENCODING;
use pingora::protocols::http::v1::server::HttpSession;
use pingora::protocols::http::ServerSession;
use pingora::protocols::Stream;
use pingora::server::ShutdownWatch;
use pingora::ErrorType;
use tokio::time::Instant;

use super::error::EdgeError;
use super::exchange::{self, Ending};
use super::framing;
use super::respond::{self, Asked};
use super::timer::ConnTimer;
use super::tunnel::Tunnel;
use super::upstreams::Kept;
use super::{Connection, ProxyApp};

/// How long a client connection keeps its last server connection while it sends nothing: a
/// burst of requests rides one server connection; a client that has gone quiet leaves it to
/// the shared pool.
pub const KEEP_IDLE: Duration = Duration::from_secs(1);

/// Serves the requests of one HTTP/1 connection; a connection upgraded by a 101 comes back as
/// the tunnel to run.
pub async fn serve(
    app: &Arc<ProxyApp>,
    stream: Stream,
    conn: &Connection,
    shutdown: ShutdownWatch,
) -> Option<Tunnel> {
    let mut reuse = Reuse::default();
    let tunnel = serve_requests(app, stream, conn, shutdown, &mut reuse).await;
    app.connector.give_back(&mut reuse.kept);
    tunnel
}

/// What an HTTP/1 connection keeps from one request to the next: its last server connection,
/// and its two timers ([`ConnTimer`], made once, moved later for each request). Each request's
/// exchange uses the server connection and the watch; HTTP/2 streams have none of it.
#[derive(Default)]
pub struct Reuse {
    /// The server connection kept for the next request.
    pub kept: Kept,
    /// The wait for the next request head.
    idle: ConnTimer,
    /// The watch on the client while the server answers.
    pub watch: ConnTimer,
}

async fn serve_requests(
    app: &Arc<ProxyApp>,
    mut stream: Stream,
    conn: &Connection,
    mut shutdown: ShutdownWatch,
    reuse: &mut Reuse,
) -> Option<Tunnel> {
    let mut first = true;
    // Bytes of the next request, read while the last one was served (pipelining).
    let mut pipelined: Option<BytesMut> = None;
    loop {
        let mut session = HttpSession::new(stream);
        session.set_pipelining_enabled(true);
        if let Some(prefix) = pipelined.take() {
            session.set_pipelined_prefix(prefix);
        }
        // The head's deadline is ours (the gate's header_timeout, then idle_timeout, over the
        // whole head): pingora's per-read timer would only be a second one. Its read timeout
        // comes back for the body.
        let body_timeout = session.get_read_timeout();
        session.set_read_timeout(None);
        let closing = *shutdown.borrow();
        if closing && !first {
            return None;
        }
        let read = if first {
            tokio::select! {
                biased;
                read = session.read_request() => read,
                _ = shutdown.changed() => return None,
            }
        } else {
            // None: idle past idle_timeout (closed without a word, like a client may) or the
            // server stops.
            next_head(app, &mut session, &mut shutdown, reuse).await?
        };
        first = false;
        session.set_read_timeout(body_timeout);
        match read {
            Ok(Some(_)) => {}
            // The client closed the connection between requests.
            Ok(None) => return None,
            Err(error) => {
                if matches!(error.etype(), ErrorType::InvalidHTTPHeader) {
                    let mut session = ServerSession::H1(session);
                    refuse_unread(&mut session).await;
                }
                return None;
            }
        }
        let refused = check_head(&session).err();
        if closing || *shutdown.borrow() {
            session.set_server_keepalive(None);
        }
        let mut session = ServerSession::H1(session);
        let ending = exchange::serve(app, conn, &mut session, refused, Some(&mut *reuse)).await;
        match ending {
            Ending::Done => (stream, pipelined) = finish(session).await?,
            Ending::Close => {
                session.set_keepalive(None);
                finish(session).await;
                return None;
            }
            Ending::Abort => {
                session.shutdown().await;
                return None;
            }
            Ending::Upgraded(upgraded) => {
                let ServerSession::H1(client) = session else {
                    return None;
                };
                return Tunnel::start(client, *upgraded);
            }
        }
    }
}

/// Ends a response on an HTTP/1 connection and gives back the connection, with the bytes of a
/// pipelined next request already read, when it may carry another request. Through the HTTP/1
/// session itself: pingora's `ServerSession::finish` is a future the size of its largest kind
/// of session (3.6 KiB) that every connection's state would carry.
async fn finish(session: ServerSession) -> Option<(Stream, Option<BytesMut>)> {
    let ServerSession::H1(mut session) = session else {
        return None;
    };
    session.finish_body().await.ok()?;
    let reusable = session.reuse().await.ok()??;
    Some(reusable.into_parts())
}

/// Waits for a keep-alive connection's next request head, at most `idle_timeout`; `None` when
/// that passes or the server stops first. A client idle for [`KEEP_IDLE`] is between bursts: its
/// kept server connection goes to the shared pool then. Both waits are the connection's own
/// timer.
async fn next_head(
    app: &ProxyApp,
    session: &mut HttpSession,
    shutdown: &mut ShutdownWatch,
    reuse: &mut Reuse,
) -> Option<pingora::Result<Option<usize>>> {
    let now = Instant::now();
    let idle_end = now + app.limits.idle_timeout;
    let read = session.read_request();
    tokio::pin!(read);
    tokio::select! {
        biased;
        read = &mut read => return Some(read),
        () = reuse.idle.until(now + app.limits.idle_timeout.min(KEEP_IDLE)) => {}
        _ = shutdown.changed() => return None,
    }
    app.connector.give_back(&mut reuse.kept);
    tokio::select! {
        biased;
        read = &mut read => Some(read),
        () = reuse.idle.until(idle_end) => None,
        _ = shutdown.changed() => None,
    }
}

/// The framing checks pingora's parser leaves to us.
fn check_head(session: &HttpSession) -> Result<(), EdgeError> {
    let head = session.req_header();
    let has_te = head.headers.contains_key(TRANSFER_ENCODING);
    let raw = session.get_headers_raw_bytes();
    framing::check_head(&raw, has_te, framing::DEFAULT_MAX_HEADER_BYTES).map_err(|violation| {
        match violation.status() {
            431 => EdgeError::HeadTooLarge,
            _ => EdgeError::BadRequest,
        }
    })
}

/// Answers a head that could not be parsed at all: 400, then the connection closes.
async fn refuse_unread(session: &mut ServerSession) {
    let Some(response) = respond::for_error(&EdgeError::BadRequest, false) else {
        return;
    };
    if let Err(error) = respond::send(session, response, Asked::default()).await {
        tracing::debug!(%error, "could not answer an unreadable request head");
    }
    session.shutdown().await;
}
