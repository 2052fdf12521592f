//! The request path: pingora's `ProxyHttp` hooks for one listener. Reads the current snapshot,
//! answers ACME tokens and redirects on plain HTTP, routes, picks a server ([`balancing`]: sticky,
//! policy, queue, retries, passive health), sets the forwarding headers, and maps every failure to
//! a response through [`respond`].

pub mod balancing;
pub mod forwarded;
pub mod framing;
pub mod h2;
pub mod inference;
pub mod respond;

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use http::header::{HOST, TRANSFER_ENCODING};
use http::{HeaderValue, Uri};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::*;
use pingora::proxy::FailToProxy;
use pingora::{Error, ErrorType};

use crate::acme::http01::CHALLENGE_PREFIX;
use crate::cluster::Cluster;
use crate::config::model::{ListenerLimits, LISTENER_HTTP, MAX_RETRIES};
use crate::lifecycle::{ActiveGuard, ActiveRequests};
use crate::observe::{Finish, RequestObs};
use crate::pool::Pick;
use crate::routing::{normalize_host, strip_path_prefix};
use crate::runtime::{Live, RouteTarget};
use crate::security;
use balancing::RetryFacts;
use respond::LocalResponse;

/// pingora's cap on attempts per request (the first plus the most retries an upstream may ask
/// for); each upstream's own `retries` is enforced in the hooks.
pub const DEFAULT_MAX_TRIES: usize = 1 + MAX_RETRIES as usize;

/// How long an idle pooled upstream connection is kept.
pub const DEFAULT_UPSTREAM_POOL_IDLE: Duration = Duration::from_secs(60);

/// The proxy logic of one listener.
pub struct Proxy {
    listener: Arc<str>,
    tls: bool,
    live: Arc<Live>,
    active: Arc<ActiveRequests>,
    limits: ListenerLimits,
}

impl Proxy {
    /// Applies the listener's request-head limits (`max_headers`, `idle_timeout`).
    pub fn with_limits(mut self, limits: ListenerLimits) -> Self {
        self.limits = limits;
        self
    }

    pub fn new(listener: &str, tls: bool, live: Arc<Live>, active: Arc<ActiveRequests>) -> Self {
        Self {
            listener: Arc::from(listener),
            tls,
            live,
            active,
            limits: ListenerLimits::default(),
        }
    }
}

/// Per-request state shared across the hooks.
pub struct RequestCtx {
    started: Instant,
    target: Option<Arc<RouteTarget>>,
    /// The server of the current attempt with its in-flight slot (released on drop).
    pick: Option<Pick>,
    /// Servers earlier attempts failed on.
    tried: Vec<u64>,
    /// `Retry-After` for an overload refusal.
    retry_after: Option<u64>,
    /// Original normalized host, for X-Forwarded-Host.
    host: Option<String>,
    upgrade: bool,
    hsts: Option<HeaderValue>,
    /// Attempts made so far (for retrying on another server).
    attempts: usize,
    /// The client address (the peer, or what a trusted proxy's X-Forwarded-For names).
    client: security::client::ClientAddr,
    /// CORS headers to add to the response (an allowed Origin on a route with `cors`).
    cors: security::cors::CorsHeaders,
    /// Request body bytes seen so far (for `max_body` on bodies without Content-Length).
    body_bytes: u64,
    /// Why the edge checks ([`crate::security`]) refused the request, if they did.
    refusal: Option<security::Refusal>,
    /// Counts the response's token usage against the API key's quota.
    meter: Option<security::quota::Meter>,
    /// Request id, metrics and access log state.
    obs: RequestObs,
    /// Body-based routing and token timing on inference upstreams.
    inference: inference::InferenceCtx,
    /// The current attempt was turned away by an overloaded inference server (503) and goes to
    /// another server: not a failure of that server.
    overloaded: bool,
    /// Counts this request as in flight (graceful stop waits for it) until the context drops.
    _active: ActiveGuard,
}

impl RequestCtx {
    /// Facts for a retry decision after the current attempt failed.
    fn retry_facts(&self, sent: bool, session: &Session) -> RetryFacts {
        let untried = self.target.as_ref().map_or(0, |t| {
            let mut tried = self.tried.clone();
            tried.extend(self.pick.as_ref().map(|p| p.member.id));
            t.upstream.pool.retry_candidates(&tried, Instant::now())
        });
        RetryFacts {
            attempts: self.attempts,
            retries: self.target.as_ref().map_or(0, |t| t.upstream.retries),
            untried,
            sent,
            // Generating tokens changes nothing on the server: an inference request may go to
            // another server as long as no response byte reached the client.
            idempotent: balancing::idempotent(&session.req_header().method)
                || self.inference.facts.is_some(),
            body_truncated: session.as_ref().retry_buffer_truncated() || self.inference.prefix_sent,
            responded: session.response_written().is_some(),
        }
    }

    /// Records a failure of the current attempt against its server.
    fn record_failure(&self, kind: &'static str) {
        if let (Some(pick), Some(target)) = (&self.pick, &self.target) {
            pick.member
                .state
                .record_failure(&target.upstream.health, kind, Instant::now());
        }
    }
}

/// What the request filter decided.
enum Decision {
    Proxy,
    Answer(LocalResponse),
    AnswerText(u16, Arc<str>),
    /// An HTTP-01 token this instance did not publish: another instance of the cluster may have.
    SharedChallenge(String, Arc<Cluster>),
}

impl Proxy {
    fn decide(&self, session: &mut Session, ctx: &mut RequestCtx) -> Decision {
        let snapshot = self.live.snapshots.load();
        let Some(view) = snapshot.listener(&self.listener) else {
            return Decision::Answer(LocalResponse::status(503));
        };
        let req = session.req_header();
        let path = req.uri.path();
        // ACME HTTP-01 answers come before any route, on the plain port-80 listener.
        if &*self.listener == LISTENER_HTTP && path.starts_with(CHALLENGE_PREFIX) {
            let token = &path[CHALLENGE_PREFIX.len()..];
            return match (self.live.challenges.answer(path), &snapshot.cluster) {
                (Some(answer), _) => Decision::AnswerText(200, answer),
                // Tokens are base64url (RFC 8555 §8.3); anything else never reaches Redis.
                (None, Some(cluster)) if is_token(token) => {
                    Decision::SharedChallenge(token.to_string(), cluster.clone())
                }
                (None, _) => Decision::Answer(LocalResponse::status(404)),
            };
        }
        let raw_host = req
            .headers
            .get(HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| req.uri.authority().map(|a| a.as_str()));
        let Some(host) = raw_host.and_then(normalize_host) else {
            return Decision::Answer(LocalResponse::status(400));
        };
        let rule = view.router.find(&host, path);
        let Some(rule) = rule else {
            if let Some(port) = view.redirect_https_port {
                return Decision::Answer(LocalResponse::redirect(https_location(
                    &host,
                    port,
                    req.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"),
                )));
            }
            return Decision::Answer(LocalResponse::status(404));
        };
        ctx.target = Some(rule.target.clone());
        ctx.host = Some(host);
        let peer = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip());
        ctx.client =
            security::client::resolve(peer, &session.req_header().headers, &view.trusted_proxies);
        ctx.hsts = view.hsts.clone();
        Decision::Proxy
    }
}

impl Proxy {
    /// Applies the route's CORS policy: true for a preflight (to answer now, headers in
    /// `ctx.cors`); otherwise `ctx.cors` holds the headers for the eventual response.
    fn cors(&self, session: &Session, ctx: &mut RequestCtx) -> bool {
        let Some(cors) = ctx
            .target
            .as_ref()
            .and_then(|t| t.guard.as_ref())
            .and_then(|g| g.cors())
        else {
            return false;
        };
        let req = session.req_header();
        let header = |name: &str| req.headers.get(name).and_then(|v| v.to_str().ok());
        let Some(origin) = header("origin") else {
            return false;
        };
        let preflight_method = header("access-control-request-method");
        match preflight_method {
            Some(method) if req.method == http::Method::OPTIONS => {
                let requested = header("access-control-request-headers");
                ctx.cors = security::cors::preflight(cors, origin, method, requested);
                true
            }
            _ => {
                ctx.cors = security::cors::actual(cors, origin);
                false
            }
        }
    }

    /// Runs the route's access lists, rate limit and authentication; true (and `ctx.refusal`
    /// set) when refused.
    async fn refused(&self, session: &Session, ctx: &mut RequestCtx) -> bool {
        let Some(target) = &ctx.target else {
            return false;
        };
        let Some(guard) = &target.guard else {
            return false;
        };
        let headers = &session.req_header().headers;
        match guard.admit(ctx.client.ip, headers, Instant::now()).await {
            Ok(meter) => {
                ctx.meter = meter;
                false
            }
            Err(refusal) => {
                ctx.refusal = Some(refusal);
                true
            }
        }
    }
}

impl Proxy {
    /// On an inference upstream: reads the body and routes by model, or answers at the edge
    /// (`GET /v1/models`, OpenAI errors for bad bodies and unknown models).
    async fn inspect_inference(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Option<LocalResponse>> {
        let Some(target) = ctx.target.clone() else {
            return Ok(None);
        };
        let Some(settings) = &target.upstream.inference else {
            return Ok(None);
        };
        let route_cap = target.guard.as_ref().and_then(|g| g.max_body());
        let cap = route_cap.map_or(settings.max_body, |c| c.min(settings.max_body));
        match inference::prepare(session, &target.upstream, cap, &mut ctx.inference).await? {
            inference::Prepared::Proxy => Ok(None),
            inference::Prepared::Answer(response) => Ok(Some(response)),
        }
    }
}

/// Routes whose clients speak the OpenAI API: edge errors go out in its JSON error format.
fn is_api(target: &RouteTarget) -> bool {
    target.upstream.inference.is_some() || target.guard.as_ref().is_some_and(|g| g.is_api())
}

/// `https://host[:port]/path?query` for the port-80 redirect.
fn https_location(host: &str, port: u16, path_and_query: &str) -> String {
    if port == 443 {
        format!("https://{host}{path_and_query}")
    } else {
        format!("https://{host}:{port}{path_and_query}")
    }
}

#[async_trait]
impl ProxyHttp for Proxy {
    type CTX = RequestCtx;

    /// No downstream modules. pingora's default adds a response-compression module switched
    /// off, which still cost every request an allocation for its context and two filter calls;
    /// ferrogate passes bodies through as the upstream encoded them (token streams must not
    /// wait in a compressor's buffer).
    fn init_downstream_modules(&self, _modules: &mut pingora::modules::http::HttpModules) {}

    fn new_ctx(&self) -> Self::CTX {
        RequestCtx {
            started: Instant::now(),
            target: None,
            pick: None,
            tried: Vec::new(),
            retry_after: None,
            host: None,
            upgrade: false,
            hsts: None,
            refusal: None,
            meter: None,
            body_bytes: 0,
            cors: Vec::new(),
            client: security::client::ClientAddr {
                ip: None,
                peer_trusted: false,
            },
            attempts: 0,
            obs: RequestObs::default(),
            inference: inference::InferenceCtx::default(),
            overloaded: false,
            _active: self.active.enter(),
        }
    }

    async fn early_request_filter(
        &self,
        session: &mut Session,
        _ctx: &mut Self::CTX,
    ) -> Result<()> {
        security::listener::head_limits(session, &self.limits)?;
        if let Some(h1) = session.as_http1() {
            let has_te = h1.req_header().headers.contains_key(TRANSFER_ENCODING);
            let raw = h1.get_headers_raw_bytes();
            if let Err(violation) =
                framing::check_head(&raw, has_te, framing::DEFAULT_MAX_HEADER_BYTES)
            {
                return Error::e_explain(
                    ErrorType::HTTPStatus(violation.status()),
                    "malformed request framing",
                );
            }
        }
        Ok(())
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Self::CTX) -> Result<bool> {
        ctx.obs.begin(session.req_header_mut());
        match self.decide(session, ctx) {
            Decision::Proxy if self.cors(session, ctx) => {
                // A preflight, answered here (before API keys: browsers send none on it).
                let mut header = ResponseHeader::build(204, Some(6))?;
                for (name, value) in ctx.cors.drain(..) {
                    header.insert_header(name, value)?;
                }
                header.insert_header(http::header::CONTENT_LENGTH, "0")?;
                session
                    .write_response_header(Box::new(header), true)
                    .await?;
                Ok(true)
            }
            Decision::Proxy if self.refused(session, ctx).await => {
                let guard = ctx.target.as_ref().and_then(|t| t.guard.as_deref());
                let api = ctx.target.as_ref().is_some_and(|t| is_api(t));
                let cors = std::mem::take(&mut ctx.cors);
                let response = respond::refusal_for(guard, api, ctx.refusal.take(), cors);
                respond::send(session, &response).await?;
                Ok(true)
            }
            Decision::Proxy => {
                if let Some(mut response) = self.inspect_inference(session, ctx).await? {
                    // A browser page must be able to read the edge's answer too.
                    response.headers = std::mem::take(&mut ctx.cors);
                    respond::send(session, &response).await?;
                    return Ok(true);
                }
                if session.is_upgrade_req() {
                    ctx.upgrade = true;
                    if let Some(target) = &ctx.target {
                        // The downstream read timeout also governs an upgraded connection.
                        session.set_read_timeout(Some(target.upstream.timeouts.websocket_idle));
                    }
                }
                Ok(false)
            }
            Decision::Answer(response) => {
                respond::send(session, &response).await?;
                Ok(true)
            }
            Decision::SharedChallenge(token, cluster) => {
                let answer = cluster.token(&token).await.ok().flatten();
                match answer {
                    Some(answer) => send_text(session, 200, &answer).await?,
                    None => respond::send(session, &LocalResponse::status(404)).await?,
                }
                Ok(true)
            }
            Decision::AnswerText(status, text) => {
                send_text(session, status, &text).await?;
                Ok(true)
            }
        }
    }

    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<bytes::Bytes>,
        _end_of_stream: bool,
        ctx: &mut Self::CTX,
    ) -> Result<()> {
        ctx.inference.body_chunk(body);
        let limit = ctx
            .target
            .as_ref()
            .and_then(|t| t.guard.as_ref())
            .and_then(|g| g.max_body());
        if let (Some(limit), Some(chunk)) = (limit, body.as_ref()) {
            ctx.body_bytes += chunk.len() as u64;
            if ctx.body_bytes > limit {
                return Error::e_explain(ErrorType::HTTPStatus(413), "request body over max_body");
            }
        }
        Ok(())
    }

    async fn upstream_peer(
        &self,
        session: &mut Session,
        ctx: &mut Self::CTX,
    ) -> Result<Box<HttpPeer>> {
        let Some(target) = ctx.target.clone() else {
            return Error::e_explain(ErrorType::HTTPStatus(404), "no route");
        };
        let upstream = &target.upstream;
        // A retry: the failed server's slot is given back and it is not tried again.
        if let Some(failed) = ctx.pick.take() {
            ctx.tried.push(failed.member.id);
        }
        let facts = ctx.inference.facts.as_ref();
        let pick =
            match balancing::choose(upstream, session, ctx.client.ip, &ctx.tried, facts).await {
                Ok(pick) => pick,
                Err(refusal) => {
                    let (error, retry_after) = balancing::refusal_error(refusal);
                    ctx.retry_after = retry_after;
                    return Err(error);
                }
            };
        let mut peer = HttpPeer::new(pick.member.socket, false, String::new());
        let timeouts = &upstream.timeouts;
        peer.options.connection_timeout = Some(timeouts.connect);
        peer.options.read_timeout = Some(if ctx.upgrade {
            timeouts.websocket_idle
        } else {
            timeouts.read
        });
        peer.options.idle_timeout = Some(DEFAULT_UPSTREAM_POOL_IDLE);
        ctx.obs
            .server_chosen(&target.observer, &pick.member.address);
        ctx.inference.chosen(upstream, &pick);
        ctx.pick = Some(pick);
        ctx.attempts += 1;
        Ok(Box::new(peer))
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream_request: &mut RequestHeader,
        ctx: &mut Self::CTX,
    ) -> Result<()> {
        if let Some(target) = &ctx.target {
            if target.strip_prefix {
                let path = strip_path_prefix(&target.path_prefix, upstream_request.uri.path());
                let rewritten = match upstream_request.uri.query() {
                    Some(q) => format!("{path}?{q}"),
                    None => path.into_owned(),
                };
                let uri: Uri = rewritten.parse().or_err(
                    ErrorType::HTTPStatus(400),
                    "rewritten path is not a valid URI",
                )?;
                upstream_request.set_uri(uri);
            }
            balancing::strip_sticky_cookie(&target.upstream, upstream_request)?;
            // GPU nodes never see a client's API key: it is removed or replaced by ours.
            if let Some((header, replacement)) = target.guard.as_ref().and_then(|g| g.key_rewrite())
            {
                upstream_request.remove_header(header);
                if let Some(value) = replacement {
                    upstream_request.insert_header(http::header::AUTHORIZATION, value.clone())?;
                }
            }
        }
        if !upstream_request.headers.contains_key(HOST) {
            if let Some(authority) = session.req_header().uri.authority() {
                let value = authority.as_str().to_string();
                upstream_request.insert_header(HOST, value)?;
            }
        }
        let peer = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip());
        let hop = forwarded::Hop {
            peer,
            client: ctx.client.ip.or(peer),
            keep_chain: ctx.client.peer_trusted,
        };
        let fwd = forwarded::forwarded(
            &upstream_request.headers,
            hop,
            self.tls,
            ctx.host.as_deref(),
        );
        upstream_request.insert_header(forwarded::X_FORWARDED_FOR, fwd.forwarded_for)?;
        upstream_request.insert_header(forwarded::X_FORWARDED_PROTO, fwd.proto)?;
        if let Some(host) = fwd.host {
            upstream_request.insert_header(forwarded::X_FORWARDED_HOST, host)?;
        }
        upstream_request.insert_header(forwarded::X_REAL_IP, fwd.client_ip.clone())?;
        upstream_request.insert_header(forwarded::X_CLIENT_IP, fwd.client_ip)?;
        Ok(())
    }

    async fn upstream_response_filter(
        &self,
        session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut Self::CTX,
    ) -> Result<()> {
        ctx.obs.upstream_responded();
        // An inference server answers 503 when its queue is full (vLLM, SGLang, the simulator).
        // Nothing has reached the client yet, so the request may go to another server.
        if upstream_response.status == http::StatusCode::SERVICE_UNAVAILABLE
            && ctx.inference.facts.is_some()
            && balancing::may_retry(&ctx.retry_facts(true, session))
        {
            ctx.overloaded = true;
            return Error::e_explain(
                ErrorType::HTTPStatus(503),
                "the inference server is overloaded (503); trying another server",
            );
        }
        Ok(())
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        upstream_response: &mut ResponseHeader,
        ctx: &mut Self::CTX,
    ) -> Result<()> {
        if let (Some(target), Some(pick)) = (&ctx.target, &ctx.pick) {
            let status = upstream_response.status.as_u16();
            balancing::observe_response(&target.upstream, pick, status);
            balancing::insert_sticky_cookie(&target.upstream, pick, self.tls, upstream_response)?;
        }
        ctx.obs.respond(upstream_response)?;
        // The backend's software and version are nobody's business at the edge.
        upstream_response.remove_header(&http::header::SERVER);
        let guard = ctx.target.as_ref().and_then(|t| t.guard.as_deref());
        security::headers::add(guard, upstream_response)?;
        for (name, value) in ctx.cors.drain(..) {
            if name == "vary" {
                upstream_response.append_header(name, value)?;
            } else {
                upstream_response.insert_header(name, value)?;
            }
        }
        if let Some(hsts) = &ctx.hsts {
            if !upstream_response
                .headers
                .contains_key(http::header::STRICT_TRANSPORT_SECURITY)
            {
                upstream_response
                    .insert_header(http::header::STRICT_TRANSPORT_SECURITY, hsts.clone())?;
            }
        }
        Ok(())
    }

    fn response_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<bytes::Bytes>,
        end_of_stream: bool,
        ctx: &mut Self::CTX,
    ) -> Result<Option<Duration>> {
        if let Some(meter) = ctx.meter.as_mut() {
            meter.feed(body.as_deref(), end_of_stream);
        }
        if let Some(chunk) = body.as_ref() {
            ctx.inference.response_chunk(chunk.len());
        }
        Ok(None)
    }

    fn fail_to_connect(
        &self,
        session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut Self::CTX,
        mut e: Box<Error>,
    ) -> Box<Error> {
        ctx.record_failure("connect");
        // Nothing was sent yet, so any method may go to another server.
        let retry = balancing::may_retry(&ctx.retry_facts(false, session));
        e.set_retry(retry);
        ctx.obs.connect_failed(&e, retry);
        e
    }

    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut Self::CTX,
        client_reused: bool,
    ) -> Box<Error> {
        let mut e = e.more_context(format!("Peer: {peer}"));
        // A pooled connection the server had closed says nothing about the server's health, nor
        // does an inference server that is only full.
        if std::mem::take(&mut ctx.overloaded) {
            let retry = balancing::may_retry(&ctx.retry_facts(true, session));
            e.set_retry(retry);
            return e;
        }
        if !client_reused {
            ctx.record_failure("proxy");
        }
        let timed_out = matches!(e.etype(), ErrorType::ReadTimedout);
        let retry = !timed_out && balancing::may_retry(&ctx.retry_facts(true, session));
        e.set_retry(retry);
        e
    }

    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut Self::CTX,
    ) -> FailToProxy {
        ctx.obs.proxy_failed(e);
        let status = respond::status_for_error(e);
        let can_answer = status > 0 && session.response_written().is_none();
        if can_answer {
            let mut response = LocalResponse::status(status).with_retry_after(ctx.retry_after);
            if ctx.target.as_ref().is_some_and(|t| is_api(t)) {
                response.json = true;
                response.body = std::borrow::Cow::Borrowed(respond::openai_error_body(status));
            }
            if let Err(write_error) = respond::send(session, &response).await {
                tracing::debug!(error = %write_error, "could not send the error response");
            }
        }
        FailToProxy {
            error_code: status,
            can_reuse_downstream: false,
        }
    }

    fn suppress_error_log(&self, _session: &Session, _ctx: &Self::CTX, error: &Error) -> bool {
        // A client that went away is routine; the access log line records it.
        *error.esource() == pingora::ErrorSource::Downstream
    }

    async fn logging(&self, session: &mut Session, e: Option<&Error>, ctx: &mut Self::CTX) {
        let done = Finish {
            listener: &self.listener,
            client: ctx.client.ip,
            started: ctx.started,
            route: ctx.target.as_ref().map(|t| &*t.observer),
            server: ctx.pick.as_ref().map(|p| &*p.member.address),
            unrouted: &self.live.observe.unrouted,
        };
        ctx.obs.finish(session, e, done);
        // Gives the in-flight slot back now (dropping the context would too, later).
        ctx.pick = None;
    }
}

/// A short plain-text answer (an HTTP-01 key authorization).
async fn send_text(session: &mut Session, status: u16, text: &str) -> Result<()> {
    let mut header = ResponseHeader::build(status, Some(3))?;
    header.insert_header(http::header::CONTENT_TYPE, "text/plain")?;
    header.insert_header(http::header::CONTENT_LENGTH, text.len().to_string())?;
    session
        .write_response_header(Box::new(header), false)
        .await?;
    session
        .write_response_body(Some(bytes::Bytes::copy_from_slice(text.as_bytes())), true)
        .await
}

/// Whether `text` can be an ACME token: 1 to 128 base64url characters.
fn is_token(text: &str) -> bool {
    (1..=128).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}
