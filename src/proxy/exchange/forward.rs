//! Sending a request on: the server choice (queueing), one attempt after another while a retry
//! is allowed (another server, the body replayed, never once a response byte reached the
//! client), the inference 503-overloaded retry, passive health and the status page's record of
//! failures, then the response head and body, or the handover to a tunnel after a 101.

use std::mem;
use std::sync::Arc;
use std::time::Instant;

use pingora::http::ResponseHeader;
use pingora::protocols::http::ServerSession;
use pingora::ErrorType;

use super::{Ending, Exchange, Handled};
use crate::inference::usage::UsageReader;
use crate::otel::AttemptTrace;
use crate::pool::members::Member;
use crate::proxy::attempt::{self, Attempt, Failed};
use crate::proxy::balancing::{self, RetryFacts};
use crate::proxy::error::EdgeError;
use crate::proxy::forwarded::Hop;
use crate::proxy::outbound::{self, Outbound};
use crate::proxy::relay::{self, Watchers};
use crate::proxy::reply::{self, Reply};
use crate::proxy::tunnel::{TunnelRecord, Upgraded};
use crate::runtime::RouteTarget;

impl Exchange<'_> {
    /// Facts for a retry decision after the current attempt failed.
    fn retry_facts(&self, target: &RouteTarget, session: &ServerSession, sent: bool) -> RetryFacts {
        let mut tried = self.tries.tried.clone();
        tried.extend(self.tries.pick.as_ref().map(|p| p.member.id));
        RetryFacts {
            attempts: self.tries.count,
            retries: target.upstream.retries,
            untried: target
                .upstream
                .pool
                .retry_candidates(&tried, Instant::now()),
            sent,
            // Generating tokens changes nothing on the server: an inference request may go to
            // another server as long as no response byte reached the client.
            idempotent: balancing::idempotent(&session.req_header().method)
                || self.inference.facts.is_some(),
            body_truncated: self.body.replay.truncated(),
            responded: session.response_written().is_some(),
        }
    }

    /// Sends the request to a server, retrying on others while allowed, and relays the answer.
    pub(super) async fn forward(
        &mut self,
        target: &Arc<RouteTarget>,
        session: &mut ServerSession,
    ) -> Result<Handled, EdgeError> {
        let upstream = &target.upstream;
        let websocket = matches!(session, ServerSession::H1(_))
            && outbound::is_websocket_upgrade(session.req_header());
        if !self.body.done && session.is_body_empty() {
            self.body.done = true;
        }
        self.body.limit = target.guard.as_ref().and_then(|g| g.max_body());
        loop {
            let pick = balancing::choose(
                upstream,
                &session.req_header().headers,
                self.client_ip(),
                &self.tries.tried,
                self.inference.facts.as_ref(),
            )
            .await?;
            self.obs
                .server_chosen(&target.observer, &pick.member.address);
            self.inference.chosen(upstream, &pick);
            self.tries.count += 1;
            self.tries.last_server = Some(pick.member.address.clone());
            let server = pick.member.clone();
            let attempt_number = u32::try_from(self.tries.count - 1).unwrap_or(u32::MAX);
            let mut span = self
                .trace
                .as_ref()
                .map(|t| t.attempt(&pick.member.address, attempt_number));
            self.tries.pick = Some(pick);
            let failed = match self
                .attempt(target, session, &server, websocket, &mut span)
                .await
            {
                Ok(handled) => return Ok(handled),
                Err(failed) => failed,
            };
            if let Some(span) = span.as_mut() {
                match &failed {
                    Attempted::Server { error, .. }
                    | Attempted::Client(error)
                    | Attempted::Relay(error) => span.fail(error.kind()),
                    Attempted::Overloaded => {}
                }
            }
            drop(span);
            let (error, sent, reused) = match failed {
                Attempted::Client(error) | Attempted::Relay(error) => return Err(error),
                Attempted::Overloaded => {
                    // Not the server's failure: it is only full, and another one may take it.
                    self.next_try();
                    continue;
                }
                Attempted::Server {
                    error,
                    sent,
                    reused,
                } => (error, sent, reused),
            };
            let facts = self.retry_facts(target, session, sent);
            let retry = match &error {
                EdgeError::Upstream(ErrorType::ReadTimedout) => false,
                _ => balancing::may_retry(&facts),
            };
            if let Some(pick) = &self.tries.pick {
                // A pooled connection the server had closed says nothing about its health.
                if !(sent && reused) {
                    let kind = if sent { "proxy" } else { "connect" };
                    pick.member
                        .state
                        .record_failure(&upstream.health, kind, Instant::now());
                }
            }
            if !sent {
                self.obs.connect_failed(error.kind(), retry);
            } else if !retry {
                self.obs.proxy_failed(error.kind());
            }
            if !retry {
                return Err(error);
            }
            self.next_try();
        }
    }

    /// The current attempt failed: its server is not tried again, its slot is given back.
    fn next_try(&mut self) {
        if let Some(failed) = self.tries.pick.take() {
            self.tries.tried.push(failed.member.id);
        }
    }

    /// One attempt at `server`: connect, send, read the response head, relay.
    async fn attempt(
        &mut self,
        target: &Arc<RouteTarget>,
        session: &mut ServerSession,
        server: &Member,
        websocket: bool,
        span: &mut Option<AttemptTrace>,
    ) -> Result<Handled, Attempted> {
        let upstream = &target.upstream;
        let routed = self
            .route
            .as_ref()
            .ok_or(Attempted::Client(EdgeError::NoServer))?;
        let head = {
            let request_id = self
                .obs
                .request_id
                .as_ref()
                .ok_or(Attempted::Client(EdgeError::BadRequest))?;
            let out = Outbound {
                target,
                request_id,
                peer: &self.conn.peer,
                hop: Hop {
                    client: routed.client.ip,
                    keep_chain: routed.client.peer_trusted,
                },
                proto: &self.app.proto,
                forwarded_host: routed.forwarded_host.as_ref(),
                has_body: !self.body.done || self.body.read > 0,
                websocket,
                traceparent: span.as_ref().map(AttemptTrace::traceparent),
                client_auth: self.app.client_auth,
                client_cert: self.conn.client_cert.as_ref(),
                rules: target
                    .request_headers
                    .as_ref()
                    .map(|rules| (rules, self.template_vars(session))),
            };
            outbound::upstream_head(session.req_header(), &out).map_err(Attempted::Client)?
        };
        let connector = &self.app.connector;
        let to = attempt::Target {
            upstream: &upstream.name,
            socket: server.socket,
            address: &server.address,
            tls: upstream.tls.as_deref(),
        };
        let kept = self.h1.as_deref_mut().map(|h1| &mut h1.kept);
        let mut attempt = attempt::connect(connector, to, &upstream.timeouts, websocket, kept)
            .await
            .map_err(|f| Attempted::from(f, false))?;
        let reused = attempt.reused;
        attempt
            .send(head, &self.body)
            .await
            .map_err(|f| Attempted::from(f, reused))?;
        self.body.replay.sent();
        attempt::await_response(
            session,
            &mut attempt,
            &mut self.body,
            self.h1.as_deref_mut().map(|h1| &mut h1.watch),
        )
        .await
        .map_err(|f| Attempted::from(f, reused))?;
        let Some(head) = attempt.session.resp_header() else {
            return Err(Attempted::from(
                Failed::Server {
                    error: EdgeError::Upstream(ErrorType::InvalidHTTPHeader),
                    sent: true,
                },
                reused,
            ));
        };
        let status = head.status.as_u16();
        if let Some(span) = span.as_mut() {
            span.respond(status);
        }
        if status == 101 && !websocket {
            // A switch nobody asked for: the answer cannot be relayed.
            return Err(Attempted::from(
                Failed::Server {
                    error: EdgeError::Upstream(ErrorType::InvalidHTTPHeader),
                    sent: true,
                },
                reused,
            ));
        }
        self.obs.upstream_responded();
        // An inference server answers 503 when its queue is full (vLLM, SGLang, the simulator).
        // Nothing has reached the client yet, so the request may go to another server.
        if status == 503
            && self.inference.facts.is_some()
            && balancing::may_retry(&self.retry_facts(target, session, true))
        {
            return Err(Attempted::Overloaded);
        }
        let pick = self
            .tries
            .pick
            .as_ref()
            .ok_or(Attempted::Client(EdgeError::NoServer))?;
        balancing::observe_response(upstream, pick, status);
        let routed = self
            .route
            .as_ref()
            .ok_or(Attempted::Client(EdgeError::NoServer))?;
        let request_id = self
            .obs
            .request_id
            .as_ref()
            .ok_or(Attempted::Client(EdgeError::BadRequest))?;
        let reply = Reply {
            upstream,
            pick,
            secure: self.app.tls,
            guard: target.guard.as_deref(),
            cors: mem::take(&mut self.cors),
            hsts: routed.hsts.as_ref(),
            request_id,
            rules: target
                .response_headers
                .as_ref()
                .map(|rules| (rules, self.template_vars(session))),
        };
        let response = reply::downstream_head(head, reply)
            .map_err(|error| Attempted::from(Failed::Server { error, sent: true }, reused))?;
        self.obs.respond(status);
        if status == 101 {
            // Boxed: the hand-over to a tunnel is a future of over a kilobyte that every
            // request's state would otherwise carry.
            return Box::pin(self.upgrade(target, session, response, attempt)).await;
        }
        let no_body = attempt.session.is_body_done();
        let written = match session {
            ServerSession::H2(h2) => h2.write_response_header(response, no_body),
            _ => session.write_response_header(response).await,
        };
        written.map_err(|e| Attempted::Client(EdgeError::downstream(&e)))?;
        if self.trace.is_some() && self.meter.is_none() && self.inference.facts.is_some() {
            // A retried attempt's body is read anew.
            self.usage = Some(UsageReader::default());
        }
        let watchers = Watchers {
            meter: self.meter.as_mut(),
            usage: self.usage.as_mut(),
            inference: &mut self.inference,
        };
        match relay::relay(session, &mut attempt, &mut self.body, watchers).await {
            Ok(()) => {
                let kept = self.h1.as_deref_mut().map(|h1| &mut h1.kept);
                attempt.release(connector, kept);
                Ok(Handled::Ended(Ending::Done))
            }
            // Past the response head nothing can be retried or answered: the exchange is cut.
            Err(Failed::Server { error, .. }) => {
                self.obs.proxy_failed(error.kind());
                Err(Attempted::Relay(error))
            }
            Err(Failed::Client(error)) => Err(Attempted::Relay(error)),
        }
    }

    /// Relays a 101 and hands both connections over to a tunnel.
    async fn upgrade(
        &mut self,
        target: &Arc<RouteTarget>,
        session: &mut ServerSession,
        response: Box<ResponseHeader>,
        attempt: Attempt,
    ) -> Result<Handled, Attempted> {
        session
            .write_response_header(response)
            .await
            .map_err(|e| Attempted::Client(EdgeError::downstream(&e)))?;
        let (Some(pick), Some(active), Some(server)) = (
            self.tries.pick.take(),
            self.active.take(),
            self.tries.last_server.clone(),
        ) else {
            return Err(Attempted::Client(EdgeError::NoServer));
        };
        let head = session.req_header();
        let record = TunnelRecord {
            app: self.app.clone(),
            obs: mem::take(&mut self.obs),
            client: self.client_ip(),
            method: head.method.clone(),
            path: head.uri.path().into(),
            started: self.started,
            observer: target.observer.clone(),
            server,
            pick,
            idle: target.upstream.timeouts.websocket_idle,
            active,
        };
        Ok(Handled::Upgraded(Box::new(Upgraded { attempt, record })))
    }
}

/// How an attempt went wrong.
enum Attempted {
    /// The server failed before the response head reached the client.
    Server {
        error: EdgeError,
        sent: bool,
        reused: bool,
    },
    /// The inference server answered 503 (full) and another may take the request.
    Overloaded,
    /// The client failed or the request cannot go on.
    Client(EdgeError),
    /// The response was cut after its head went out.
    Relay(EdgeError),
}

impl Attempted {
    fn from(failed: Failed, reused: bool) -> Self {
        match failed {
            Failed::Server { error, sent } => Self::Server {
                error,
                sent,
                reused,
            },
            Failed::Client(error) => Self::Client(error),
        }
    }
}
