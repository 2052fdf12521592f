//! One attempt at a server: connect (or take a pooled connection), send the request head and the
//! body kept for replay, then forward the rest of the client's body while waiting for the
//! response head. Never writes an empty body chunk (on a chunked body that is the terminator):
//! only [`Attempt::finish_body`] ends a body. Informational answers (100 Continue, 103) reach an
//! HTTP/1 client on the way.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use pingora::http::RequestHeader;
use pingora::protocols::http::v1::client::HttpSession;
use pingora::protocols::http::ServerSession;
use pingora::upstreams::peer::{HttpPeer, Peer};
use pingora::ErrorType;

use super::body::RequestBody;
use super::error::EdgeError;
use super::peer::ServerPeer;
use super::timer::ConnTimer;
use super::upstreams::{Kept, Upstreams};
use crate::config::model::Timeouts;
use crate::tls::upstream::ServerTls;

/// Why an attempt (or the relay after it) stopped.
#[derive(Debug)]
pub enum Failed {
    /// The server failed; `sent`: the request had reached it.
    Server { error: EdgeError, sent: bool },
    /// The client went away, was too slow, or broke a limit: nothing to retry.
    Client(EdgeError),
}

/// A connection to the chosen server carrying this request.
pub struct Attempt {
    pub session: HttpSession,
    /// The pool key of the server's connections.
    key: u64,
    /// Taken from the pool (a failure then says little about the server).
    pub reused: bool,
    /// The request head went out.
    pub sent: bool,
    /// The request body was sent whole and ended.
    pub body_finished: bool,
}

/// The server an attempt goes to.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    /// The upstream's name (for the log).
    pub upstream: &'a str,
    pub socket: SocketAddr,
    /// As written in the configuration (`host:port`): the TLS name comes from it.
    pub address: &'a str,
    /// The upstream's `tls`; `None` = plain HTTP.
    pub tls: Option<&'a ServerTls>,
}

/// The peer of an attempt as pingora's connector and pool see it: a plain server by its address
/// alone ([`ServerPeer`]), an https one with its TLS settings (pingora's `HttpPeer`, whose pool
/// key covers SNI, CA and client certificate).
// The plain peer is the common case and stays inline: boxing it would cost an allocation per
// attempt, and the attempt held it inline before https servers existed.
#[allow(clippy::large_enum_variant)]
enum AttemptPeer {
    Plain(ServerPeer),
    Tls(Box<HttpPeer>),
}

impl AttemptPeer {
    /// The peer for `target`, connecting within the upstream's `connect` timeout.
    fn new(target: Target<'_>, timeouts: &Timeouts) -> Self {
        let Some(tls) = target.tls else {
            return Self::Plain(ServerPeer::new(target.socket, timeouts.connect));
        };
        let mut peer = tls.peer(target.socket, target.address);
        peer.options.connection_timeout = Some(timeouts.connect);
        Self::Tls(Box::new(peer))
    }

    /// The key the idle pool files this peer's connections under.
    fn key(&self) -> u64 {
        match self {
            Self::Plain(plain) => plain.reuse_hash(),
            Self::Tls(tls) => tls.reuse_hash(),
        }
    }
}

/// Connects to `socket`, or takes the client connection's kept connection or an idle pooled
/// one to it. Reads wait at most the upstream's `read` timeout, or `websocket_idle` for an
/// upgrade request.
pub async fn connect(
    connector: &Upstreams,
    target: Target<'_>,
    timeouts: &Timeouts,
    upgrade: bool,
    kept: Option<&mut Kept>,
) -> Result<Attempt, Failed> {
    let peer = AttemptPeer::new(target, timeouts);
    let key = peer.key();
    let connected = match &peer {
        AttemptPeer::Plain(plain) => connector.session(plain, key, kept).await,
        AttemptPeer::Tls(tls) => connector.session(tls.as_ref(), key, kept).await,
    };
    let (mut session, reused) = match connected {
        Ok(connected) => connected,
        Err(e) => {
            if let AttemptPeer::Tls(tls) = &peer {
                if is_tls_failure(e.etype()) {
                    // Never a silent downgrade: the request fails (502) and the reason is said.
                    tracing::warn!(
                        upstream = target.upstream,
                        server = target.address,
                        sni = %tls.sni,
                        error = %e,
                        "TLS to the server failed"
                    );
                }
            }
            return Err(Failed::Server {
                error: EdgeError::upstream(&e, false),
                sent: false,
            });
        }
    };
    session.read_timeout = Some(if upgrade {
        timeouts.websocket_idle
    } else {
        timeouts.read
    });
    Ok(Attempt {
        session,
        key,
        reused,
        sent: false,
        body_finished: false,
    })
}

/// Whether a connect failure happened in the TLS handshake (a certificate that did not verify,
/// a name mismatch, a refused client certificate, no common protocol).
fn is_tls_failure(kind: &ErrorType) -> bool {
    matches!(
        kind,
        ErrorType::TLSHandshakeFailure
            | ErrorType::TLSHandshakeTimedout
            | ErrorType::InvalidCert
            | ErrorType::HandshakeError
            | ErrorType::TLSWantX509Lookup
    )
}

impl Attempt {
    fn server_failed(&self, error: &pingora::Error) -> Failed {
        Failed::Server {
            error: EdgeError::upstream(error, true),
            sent: self.sent,
        }
    }

    /// Sends the request head, then the body held for replay.
    pub async fn send(
        &mut self,
        head: Box<RequestHeader>,
        body: &RequestBody,
    ) -> Result<(), Failed> {
        self.sent = true;
        if let Err(e) = self.session.write_request_header(head).await {
            return Err(self.server_failed(&e));
        }
        for chunk in body.replay.chunks() {
            self.write(chunk).await?;
        }
        if body.done {
            self.finish_body().await?;
        }
        Ok(())
    }

    /// Writes one (non-empty) body chunk.
    pub async fn write(&mut self, chunk: &[u8]) -> Result<(), Failed> {
        if chunk.is_empty() || self.body_finished {
            return Ok(());
        }
        match self.session.write_body(chunk).await {
            Ok(_) => Ok(()),
            Err(e) => Err(self.server_failed(&e)),
        }
    }

    /// Ends the request body (the last chunk of a chunked body).
    pub async fn finish_body(&mut self) -> Result<(), Failed> {
        if self.body_finished {
            return Ok(());
        }
        match self.session.finish_body().await {
            Ok(_) => {
                self.body_finished = true;
                Ok(())
            }
            Err(e) => Err(self.server_failed(&e)),
        }
    }

    /// Keeps the connection for reuse when both messages ended cleanly (for the client
    /// connection's next request when it keeps one, else in the pool); else it closes.
    pub fn release(self, connector: &Upstreams, kept: Option<&mut Kept>) {
        if !self.body_finished {
            return;
        }
        connector.release(self.session, self.key, kept);
    }
}

/// What the client side of an exchange did next.
pub enum ClientEvent {
    Chunk(Bytes),
    /// The body ended.
    Ended,
    /// The client went away (or, after its body, sent something it should not have).
    Gone(EdgeError),
}

/// The client's next body chunk; once its body is done (`done`), waits for it to go away.
pub async fn client_event(session: &mut ServerSession, done: bool) -> ClientEvent {
    match session.read_body_or_idle(done).await {
        Ok(Some(chunk)) => ClientEvent::Chunk(chunk),
        Ok(None) => ClientEvent::Ended,
        Err(e) => ClientEvent::Gone(EdgeError::downstream(&e)),
    }
}

/// Takes one client event into the attempt: counts and forwards a chunk (kept for replay while
/// small), ends the upstream body when the client's ended.
pub async fn take_client_event(
    event: ClientEvent,
    session: &mut ServerSession,
    attempt: &mut Attempt,
    body: &mut RequestBody,
) -> Result<(), Failed> {
    match event {
        ClientEvent::Chunk(chunk) => {
            body.count(chunk.len()).map_err(Failed::Client)?;
            attempt.write(&chunk).await?;
            body.replay.sent_chunk(&chunk);
            if session.is_body_done() {
                body.done = true;
                attempt.finish_body().await?;
            }
            Ok(())
        }
        ClientEvent::Ended => {
            body.done = true;
            attempt.finish_body().await
        }
        ClientEvent::Gone(error) => Err(Failed::Client(error)),
    }
}

/// How long an HTTP/1 client that sent its whole request is left alone before the exchange
/// watches for it going away. Most answers come sooner, and watching costs a read on the
/// client's socket.
pub const CLIENT_WATCH_DELAY: Duration = Duration::from_millis(50);

/// The client's next event while waiting for the server's answer: at once while its body is
/// still coming. Once it is done, an HTTP/1 client (`watch`: its connection's own
/// [`ConnTimer`]) is watched after [`CLIENT_WATCH_DELAY`]; an HTTP/2 stream (no timer) at once,
/// since waiting for its reset only leaves a waker with the stream (the connection's task reads
/// the socket either way) and costs less than a timer.
async fn watch_client(
    session: &mut ServerSession,
    done: bool,
    watch: Option<&mut ConnTimer>,
) -> ClientEvent {
    if let (true, Some(watch)) = (done, watch) {
        watch.after(CLIENT_WATCH_DELAY).await;
    }
    client_event(session, done).await
}

/// Waits for the server's response head (the final one, or a 101), forwarding the client's body
/// meanwhile and informational answers to an HTTP/1 client.
pub async fn await_response(
    session: &mut ServerSession,
    attempt: &mut Attempt,
    body: &mut RequestBody,
    mut watch: Option<&mut ConnTimer>,
) -> Result<(), Failed> {
    if !body.done && session.is_body_done() {
        body.done = true;
        attempt.finish_body().await?;
    }
    loop {
        tokio::select! {
            biased;
            read = attempt.session.read_response() => {
                if let Err(e) = read {
                    return Err(attempt.server_failed(&e));
                }
                let Some(head) = attempt.session.resp_header() else {
                    return Err(Failed::Server {
                        error: EdgeError::Upstream(pingora::ErrorType::InvalidHTTPHeader),
                        sent: true,
                    });
                };
                if !head.status.is_informational() || head.status == 101 {
                    return Ok(());
                }
                let informational = Box::new(head.clone());
                if let Err(e) = session.write_response_header(informational).await {
                    return Err(Failed::Client(EdgeError::downstream(&e)));
                }
            }
            event = watch_client(session, body.done, watch.as_deref_mut()) => {
                take_client_event(event, session, attempt, body).await?;
            }
        }
    }
}
