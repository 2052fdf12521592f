//! One request from its head to its end, in this order: too many header fields (431) and
//! CONNECT (405) refused; the routing decision
//! ([`super::decide`]: ACME HTTP-01 answers, redirect to https, route by host, path and
//! `match`); CORS preflights; the route's refusals (`deny_user_agents`, `countries`) and guard
//! (access lists, rate limit, API keys, Basic auth, quota); the answer of a route that answers
//! itself (`redirect`, `respond`); an inference request's body read and routed by model; then
//! the server attempts ([`super::attempt`]: choice with
//! queueing, retries on another server with the body replayed, failover before the first
//! response byte, the inference 503-overloaded retry, passive health), the response head
//! ([`super::reply`]) and body ([`super::relay`]), or the handover to a tunnel after a 101. Every
//! local answer goes through [`super::respond`], every failure is an [`EdgeError`]; the access
//! line and metrics are written once, at the end.

use std::mem;
use std::sync::Arc;
use std::time::Instant;

use http::Method;
use pingora::protocols::http::ServerSession;

use super::body::RequestBody;
use super::decide::{self, Arrival, Decision, Routed};
use super::error::EdgeError;
use super::h1::Reuse;
use super::inference::{self, InferenceCtx, Prepared};
use super::respond::{self, Asked, LocalResponse};
use super::tunnel::Upgraded;
use super::{Connection, ProxyApp};
use crate::cluster::Cluster;
use crate::inference::request::operation;
use crate::inference::usage::UsageReader;
use crate::lifecycle::ActiveGuard;
use crate::observe::{Finish, RequestObs};
use crate::otel::request::{GenAi, Incoming};
use crate::otel::{self, RequestTrace};
use crate::pool::Pick;
use crate::routing::answer::EdgeAnswer;
use crate::routing::headers::TemplateVars;
use crate::runtime::RouteTarget;
use crate::security::cors::{self, CorsHeaders};
use crate::security::listener;

mod forward;
use crate::security::quota::Meter;

/// How an exchange left its connection.
pub enum Ending {
    /// Finished cleanly: an HTTP/1 connection may carry the next request.
    Done,
    /// Answered, but the connection must close.
    Close,
    /// Broken off mid-response: the connection (or h2 stream) ends without completing it.
    Abort,
    /// The server answered 101: the connection becomes a tunnel.
    Upgraded(Box<Upgraded>),
}

/// How the request was handled, when it did not fail.
enum Handled {
    Ended(Ending),
    Upgraded(Box<Upgraded>),
}

impl Handled {
    /// A local answer was written; `close`: the connection ends after it.
    fn answered(close: bool) -> Self {
        Self::Ended(if close { Ending::Close } else { Ending::Done })
    }
}

/// The attempts of one request.
#[derive(Default)]
struct Tries {
    /// The current attempt's server with its in-flight slot (given back on drop).
    pick: Option<Pick>,
    /// Servers earlier attempts failed on.
    tried: Vec<u64>,
    /// Attempts made so far.
    count: usize,
    /// The last server chosen, for the access line.
    last_server: Option<Arc<str>>,
}

/// The state of one request.
struct Exchange<'a> {
    app: &'a Arc<ProxyApp>,
    conn: &'a Connection,
    /// What an HTTP/1 client connection keeps between its requests: its idle server connection
    /// and its timer for watching the client while the server answers.
    h1: Option<&'a mut Reuse>,
    started: Instant,
    obs: RequestObs,
    route: Option<Routed>,
    /// CORS headers for the response (an allowed Origin on a route with `cors`).
    cors: CorsHeaders,
    /// Counts the response's token usage against the API key's quota.
    meter: Option<Meter>,
    inference: InferenceCtx,
    body: RequestBody,
    tries: Tries,
    /// Counts this request as in flight (graceful stop waits for it) until it ends.
    active: Option<ActiveGuard>,
    /// The request's span (`otel:`); ends when the request does.
    trace: Option<RequestTrace>,
    /// Reads a traced inference response's usage when no quota meter does.
    usage: Option<UsageReader>,
}

/// Serves one request on `session`; `refused` is a verdict on its head the connection already
/// reached (answered as an error); `h1`: what an HTTP/1 client connection keeps from one
/// request to the next (its server connection, its client watch).
pub async fn serve<'a>(
    app: &'a Arc<ProxyApp>,
    conn: &'a Connection,
    session: &mut ServerSession,
    refused: Option<EdgeError>,
    h1: Option<&'a mut Reuse>,
) -> Ending {
    let mut ex = Exchange {
        app,
        conn,
        h1,
        started: Instant::now(),
        obs: RequestObs::default(),
        route: None,
        cors: Vec::new(),
        meter: None,
        inference: InferenceCtx::default(),
        body: RequestBody::default(),
        tries: Tries::default(),
        active: Some(app.active.enter()),
        trace: None,
        usage: None,
    };
    // Counted before the request id joins the head.
    let fields = session.req_header().headers.len();
    let refused = match refused {
        None if !listener::fields_allowed(fields, &app.limits) => Some(EdgeError::HeadTooLarge),
        refused => refused,
    };
    ex.obs.begin(session.req_header());
    ex.trace = start_trace(app, conn, session);
    let handled = match refused {
        Some(error) => Err(error),
        None => ex.handle(session).await,
    };
    match handled {
        Ok(Handled::Ended(ending)) => {
            ex.finish(session, None);
            ending
        }
        Ok(Handled::Upgraded(upgraded)) => {
            if let Some(trace) = ex.trace.take() {
                trace.respond(101);
            }
            Ending::Upgraded(upgraded)
        }
        Err(error) => {
            let ending = ex.fail(session, &error).await;
            ex.finish(session, Some(&error));
            ending
        }
    }
}

impl Exchange<'_> {
    async fn handle(&mut self, session: &mut ServerSession) -> Result<Handled, EdgeError> {
        if session.req_header().method == Method::CONNECT {
            return Err(EdgeError::MethodNotAllowed);
        }
        let (decision, cluster) = {
            let snapshot = self.app.live.snapshots.load();
            let view = snapshot.listener(&self.app.listener);
            let arrival = Arrival {
                peer: self.conn.peer.ip,
                client_cert: self.conn.client_cert.is_some(),
            };
            let decision = decide::decide(view, self.app.acme, arrival, session.req_header());
            let cluster = match decision {
                Decision::Challenge => snapshot.cluster.clone(),
                _ => None,
            };
            (decision, cluster)
        };
        let routed = match decision {
            Decision::Route(routed) => routed,
            Decision::Refuse(status) => {
                return self.answer(session, LocalResponse::status(status)).await
            }
            Decision::Redirect(location) => {
                return self
                    .answer(session, LocalResponse::redirect(location))
                    .await
            }
            Decision::Challenge => {
                let response = self
                    .challenge(session.req_header().uri.path(), cluster)
                    .await;
                return self.answer(session, response).await;
            }
        };
        let target = routed.target.clone();
        self.route = Some(routed);
        if let Some(trace) = &self.trace {
            trace.route(&target.name, Some(&target.upstream.name));
        }
        if let Some(preflight) = self.cors(&target, session) {
            // Answered here, before API keys: browsers send none on a preflight.
            return self
                .answer(session, LocalResponse::preflight(preflight))
                .await;
        }
        if let Some(refusals) = &target.refusals {
            // Before the guard: a refused client spends no rate-limit token.
            let checked = refusals.check(&session.req_header().headers, self.client_ip());
            if let Err(refused) = checked {
                tracing::debug!(route = %target.name, reason = refused.reason(), "request refused by the route's rules");
                self.app
                    .live
                    .security
                    .rejected(&target.name, refused.reason());
                let cors = mem::take(&mut self.cors);
                let response = respond::refusal_for(
                    target.guard.as_deref(),
                    is_api(&target),
                    refused.refusal(),
                    cors,
                );
                return self.answer(session, response).await;
            }
        }
        if let Some(guard) = &target.guard {
            let client = self.client_ip();
            let verdict = guard
                .admit(client, &session.req_header().headers, Instant::now())
                .await;
            match verdict {
                Ok(meter) => self.meter = meter,
                Err(refusal) => {
                    let cors = mem::take(&mut self.cors);
                    let response =
                        respond::refusal_for(Some(guard), is_api(&target), refusal, cors);
                    return self.answer(session, response).await;
                }
            }
        }
        if let Some(answer) = &target.answer {
            return self.route_answer(session, &target, answer).await;
        }
        if let Some(settings) = &target.upstream.inference {
            let route_cap = target.guard.as_ref().and_then(|g| g.max_body());
            let cap = route_cap.map_or(settings.max_body, |c| c.min(settings.max_body));
            let upstream = &target.upstream;
            let prepared =
                inference::prepare(session, upstream, cap, &mut self.body, &mut self.inference)
                    .await?;
            if let Prepared::Answer(mut response) = prepared {
                // A browser page must be able to read the edge's answer too.
                response.headers = mem::take(&mut self.cors);
                return self.answer(session, response).await;
            }
        }
        self.forward(&target, session).await
    }

    /// The resolved client address.
    fn client_ip(&self) -> Option<std::net::IpAddr> {
        self.route
            .as_ref()
            .map_or(self.conn.peer.ip, |r| r.client.ip)
    }

    /// Applies the route's CORS policy: the headers of a preflight to answer now, or `None` (and
    /// `self.cors` holds the headers for the eventual response).
    fn cors(&mut self, target: &RouteTarget, session: &ServerSession) -> Option<CorsHeaders> {
        let policy = target.guard.as_ref().and_then(|g| g.cors())?;
        let req = session.req_header();
        let header = |name: &str| req.headers.get(name).and_then(|v| v.to_str().ok());
        let origin = header("origin")?;
        match header("access-control-request-method") {
            Some(method) if req.method == Method::OPTIONS => {
                let requested = header("access-control-request-headers");
                Some(cors::preflight(policy, origin, method, requested))
            }
            _ => {
                self.cors = cors::actual(policy, origin);
                None
            }
        }
    }

    /// The answer to an ACME HTTP-01 challenge: this instance's token, or the cluster's.
    async fn challenge(&self, path: &str, cluster: Option<Arc<Cluster>>) -> LocalResponse {
        if let Some(answer) = self.app.live.challenges.answer(path) {
            return LocalResponse::text(200, &answer);
        }
        let shared = match (decide::challenge_token(path), cluster) {
            (Some(token), Some(cluster)) => cluster.token(token).await.ok().flatten(),
            _ => None,
        };
        match shared {
            Some(answer) => LocalResponse::text(200, &answer),
            None => LocalResponse::status(404),
        }
    }

    /// Writes a local answer.
    async fn answer(
        &mut self,
        session: &mut ServerSession,
        response: LocalResponse,
    ) -> Result<Handled, EdgeError> {
        let close = response.close;
        let asked = Asked {
            head_only: session.req_header().method == Method::HEAD,
            request_id: self.obs.request_id.as_ref(),
            rules: None,
        };
        respond::send(session, response, asked)
            .await
            .map_err(|e| EdgeError::downstream(&e))?;
        Ok(Handled::answered(close))
    }

    /// The answer of a route that answers itself, with the route's CORS and `headers.response`.
    async fn route_answer(
        &mut self,
        session: &mut ServerSession,
        target: &RouteTarget,
        answer: &EdgeAnswer,
    ) -> Result<Handled, EdgeError> {
        let head_only = session.req_header().method == Method::HEAD;
        let cors = mem::take(&mut self.cors);
        let (response, header) = {
            let vars = self.template_vars(session);
            let mut response = match answer {
                EdgeAnswer::Redirect(redirect) => LocalResponse::route_redirect(redirect, &vars),
                EdgeAnswer::Respond(fixed) => LocalResponse::fixed(fixed),
            };
            response.headers = cors;
            let asked = Asked {
                head_only,
                request_id: self.obs.request_id.as_ref(),
                rules: target.response_headers.as_ref().map(|rules| (rules, vars)),
            };
            let header = respond::head(&response, asked).map_err(|e| EdgeError::downstream(&e))?;
            (response, header)
        };
        let close = response.close;
        respond::write(session, header, response, head_only)
            .await
            .map_err(|e| EdgeError::downstream(&e))?;
        Ok(Handled::answered(close))
    }

    /// What the placeholders of the route's redirect and header rules stand for in this request.
    pub(super) fn template_vars<'s>(&'s self, session: &'s ServerSession) -> TemplateVars<'s> {
        let head = session.req_header();
        let host = self
            .route
            .as_ref()
            .and_then(|r| r.forwarded_host.as_ref())
            .and_then(|h| h.to_str().ok())
            .unwrap_or_default();
        TemplateVars {
            host,
            path: head.uri.path_and_query().map_or("/", |pq| pq.as_str()),
            scheme: if self.app.tls { "https" } else { "http" },
            client_ip: self.client_ip(),
            request_id: self
                .obs
                .request_id
                .as_ref()
                .and_then(|id| id.to_str().ok())
                .unwrap_or_default(),
        }
    }

    /// Answers a failure when a response can still be written; says how the connection ends.
    async fn fail(&mut self, session: &mut ServerSession, error: &EdgeError) -> Ending {
        if session.response_written().is_some() {
            return Ending::Abort;
        }
        let api = self.route.as_ref().is_some_and(|r| is_api(&r.target));
        let Some(mut response) = respond::for_error(error, api) else {
            return Ending::Abort;
        };
        response.headers = mem::take(&mut self.cors);
        let asked = Asked {
            head_only: session.req_header().method == Method::HEAD,
            request_id: self.obs.request_id.as_ref(),
            rules: None,
        };
        if let Err(write) = respond::send(session, response, asked).await {
            tracing::debug!(error = %write, "could not send the error response");
            return Ending::Abort;
        }
        Ending::Close
    }

    /// Counts the request and writes its access line.
    fn finish(&mut self, session: &ServerSession, error: Option<&EdgeError>) {
        let head = session.req_header();
        let target = self.route.as_ref().map(|r| &r.target);
        let done = Finish {
            listener: &self.app.listener,
            client: self.client_ip(),
            method: head.method.as_str(),
            path: head.uri.path(),
            status: session.response_written().map_or(0, |r| r.status.as_u16()),
            bytes_in: session.body_bytes_read(),
            bytes_out: session.body_bytes_sent(),
            error: error.map(EdgeError::kind),
            started: self.started,
            route: target.map(|t| &*t.observer),
            server: self.tries.last_server.as_deref(),
            unrouted: &self.app.live.observe.unrouted,
        };
        self.obs.finish(done);
        if let Some(trace) = self.trace.take() {
            self.end_trace(trace, session, error);
        }
        // Gives the in-flight slots back now.
        self.tries.pick = None;
        self.active = None;
    }
}

impl Exchange<'_> {
    /// Ends the request's span: the status sent or the error, and an inference request's GenAI
    /// attributes.
    fn end_trace(&self, trace: RequestTrace, session: &ServerSession, error: Option<&EdgeError>) {
        if let Some(response) = session.response_written() {
            trace.respond(response.status.as_u16());
        }
        if let Some(error) = error {
            trace.fail(error.kind());
        }
        let Some(facts) = &self.inference.facts else {
            return;
        };
        let usage = match &self.meter {
            Some(meter) => meter.usage(),
            None => self.usage.as_ref().and_then(UsageReader::usage),
        };
        let first = self.inference.first_chunk().filter(|_| facts.stream);
        trace.gen_ai(&GenAi {
            operation: operation(session.req_header().uri.path()),
            model: &facts.model,
            input_tokens: usage.and_then(|u| u.prompt_tokens),
            output_tokens: usage.and_then(|u| u.completion_tokens),
            time_to_first_token: first.map(|at| at.duration_since(self.started)),
        });
    }
}

/// The span of a request when the configuration in force traces (`otel:`).
fn start_trace(app: &ProxyApp, conn: &Connection, session: &ServerSession) -> Option<RequestTrace> {
    let pipeline = app.live.snapshots.load().otel.clone()?;
    let head = session.req_header();
    let host = head
        .uri
        .host()
        .or_else(|| {
            head.headers
                .get(http::header::HOST)
                .and_then(|h| h.to_str().ok())
        })
        .unwrap_or_default();
    let protocol = match (session, head.version) {
        (ServerSession::H2(_), _) => "2",
        (_, http::Version::HTTP_10) => "1.0",
        _ => "1.1",
    };
    let incoming = Incoming {
        method: head.method.as_str(),
        path: head.uri.path(),
        scheme: if app.tls { "https" } else { "http" },
        host,
        client: conn.peer.ip,
        protocol,
        user_agent: head
            .headers
            .get(http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok()),
    };
    Some(pipeline.start(&otel::context::parent(&head.headers), incoming))
}

/// Routes whose clients speak the OpenAI API: edge errors go out in its JSON error format.
fn is_api(target: &RouteTarget) -> bool {
    target.upstream.inference.is_some() || target.guard.as_ref().is_some_and(|g| g.is_api())
}
