//! The inference side of the request path: reads an OpenAI request's body before a server is
//! chosen (whole up to 64 KiB, a prefix of larger ones), routes by its model, answers
//! `GET /v1/models` with the merged list, refuses bad bodies in OpenAI's error format, and times
//! the response (time to first token, gaps between streamed chunks).
//!
//! The body reaches the server byte for byte. pingora replays what was read before the server
//! was chosen only from its 64 KiB retry buffer, so a small body is read with that buffer on and
//! replayed from it; of a large body (Content-Length over 64 KiB) only a prefix is read, always
//! leaving more than 64 KiB unread, and that prefix is put back in front of the first chunk
//! pingora reads itself. A large body without Content-Length whose end arrives while reading
//! the prefix cannot be put back and gets 411.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use http::header::CONTENT_LENGTH;
use pingora::prelude::*;

use super::respond::LocalResponse;
use crate::inference::metrics::InferenceHandles;
use crate::inference::openai::{self, BodyError};
use crate::inference::prefix::BLOCK_CHARS;
use crate::inference::request::{endpoint, Endpoint, InferenceFacts};
use crate::pool::{Pick, ServerState};
use crate::runtime::UpstreamRuntime;

/// What pingora can replay from its retry buffer: bodies up to this are read whole.
pub const PREREAD_LIMIT: usize = 64 * 1024;
/// How much of a large body is read for routing (the model and the prompt's first blocks).
pub const PREFIX_TARGET: usize = 256 * 1024;
/// Roughly how many tokens one prefix block holds (4 characters a token).
const TOKENS_PER_BLOCK: u64 = (BLOCK_CHARS / 4) as u64;

/// Per-request inference state.
#[derive(Default)]
pub struct InferenceCtx {
    pub facts: Option<InferenceFacts>,
    /// A large body's prefix, read for routing, still to be sent in front of the rest.
    pending: Option<Bytes>,
    /// The prefix went out on an attempt: the body can no longer be replayed elsewhere.
    pub prefix_sent: bool,
    /// When the current attempt's server was chosen.
    attempt_started: Option<Instant>,
    last_chunk: Option<Instant>,
    handles: Option<InferenceHandles>,
    /// The server and the prompt tokens it had to prefill, when this attempt's time to first
    /// token teaches the server's prefill rate.
    prefill_sample: Option<(Arc<ServerState>, f64)>,
}

/// What [`prepare`] decided.
pub enum Prepared {
    Proxy,
    Answer(LocalResponse),
}

/// A body as read for routing.
enum Captured {
    /// The whole body (pingora replays it from its retry buffer).
    Whole(Bytes),
    /// The first bytes of a larger body, to be sent in front of the rest.
    Prefix(Bytes),
}

fn reject(upstream: &UpstreamRuntime, status: u16, reason: &'static str, body: String) -> Prepared {
    if let Some(metrics) = &upstream.inference_metrics {
        metrics.rejected(&upstream.name, reason);
    }
    Prepared::Answer(LocalResponse::json(status, body))
}

/// Looks at an inference request before a server is chosen. `cap` is the most body bytes
/// accepted.
pub async fn prepare(
    session: &mut Session,
    upstream: &UpstreamRuntime,
    cap: u64,
    ctx: &mut InferenceCtx,
) -> Result<Prepared> {
    let req = session.req_header();
    match endpoint(&req.method, req.uri.path()) {
        Endpoint::Other => Ok(Prepared::Proxy),
        Endpoint::Models => Ok(match merged_models(upstream) {
            Some(models) => {
                Prepared::Answer(LocalResponse::json(200, openai::models_list(&models)))
            }
            // Nothing known yet: the servers answer themselves.
            None => Prepared::Proxy,
        }),
        Endpoint::Generate => {
            let captured = match capture(session, cap).await? {
                Ok(captured) => captured,
                Err(411) => {
                    return Ok(reject(
                        upstream,
                        411,
                        "length_required",
                        super::respond::openai_error_body(411).to_string(),
                    ))
                }
                Err(_) => {
                    return Ok(reject(
                        upstream,
                        413,
                        "too_large",
                        super::respond::openai_error_body(413).to_string(),
                    ))
                }
            };
            let parsed = match &captured {
                Captured::Whole(body) => openai::parse_request(body),
                Captured::Prefix(prefix) => openai::parse_prefix(prefix),
            };
            let prefix_only = matches!(captured, Captured::Prefix(_));
            if let Captured::Prefix(prefix) = captured {
                ctx.pending = Some(prefix);
            }
            let request = match parsed {
                Ok(request) => request,
                // The model may come after the bytes read: balance without it.
                Err(BodyError::MissingModel) if prefix_only => return Ok(Prepared::Proxy),
                Err(error) => {
                    let body = openai::bad_request(&error);
                    let reason = match error {
                        BodyError::Malformed(_) => "bad_request",
                        BodyError::MissingModel => "missing_model",
                    };
                    return Ok(reject(upstream, 400, reason, body));
                }
            };
            if !model_may_exist(upstream, &request.model) {
                let body = openai::model_not_found(&request.model);
                let mut answer = reject(upstream, 404, "model_not_found", body);
                if let (Prepared::Answer(response), Some(_)) = (&mut answer, &ctx.pending) {
                    // The rest of the body was never read: the connection cannot be reused.
                    response.close = true;
                }
                return Ok(answer);
            }
            ctx.facts = Some(InferenceFacts::new(request, &session.req_header().headers));
            Ok(Prepared::Proxy)
        }
    }
}

/// Every model the upstream's servers serve, if any server's list is known.
fn merged_models(upstream: &UpstreamRuntime) -> Option<Vec<String>> {
    let mut known = false;
    let mut all = BTreeSet::new();
    for member in upstream.pool.members().iter() {
        if let Some(models) = member.served_models() {
            known = true;
            all.extend(models.iter().cloned());
        }
    }
    known.then(|| all.into_iter().collect())
}

/// False only when every server's list is known and none has `model`.
fn model_may_exist(upstream: &UpstreamRuntime, model: &str) -> bool {
    let members = upstream.pool.members();
    members.is_empty()
        || members.iter().any(|m| {
            m.served_models()
                .is_none_or(|models| models.iter().any(|x| x == model))
        })
}

/// Reads the body for routing. `Ok(Err(status))`: refuse with 413 (over `cap`) or 411.
async fn capture(session: &mut Session, cap: u64) -> Result<std::result::Result<Captured, u16>> {
    let downstream = session.as_downstream_mut();
    if downstream.is_body_empty() {
        return Ok(Ok(Captured::Whole(Bytes::new())));
    }
    let declared: Option<u64> = downstream
        .req_header()
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok());
    if declared.is_some_and(|len| len > cap) {
        return Ok(Err(413));
    }
    let mut read = BytesMut::new();
    match declared {
        Some(len) if len > PREREAD_LIMIT as u64 => {
            // Leave more than one read's worth unread so pingora still has body to send, in
            // front of which the prefix goes.
            while read.len() < PREFIX_TARGET
                && len.saturating_sub(read.len() as u64) > 2 * PREREAD_LIMIT as u64
            {
                match downstream.read_request_body().await? {
                    Some(chunk) => read.extend_from_slice(&chunk),
                    None => break,
                }
            }
            if read.is_empty() {
                match downstream.read_request_body().await? {
                    Some(chunk) if !downstream.is_body_done() => read.extend_from_slice(&chunk),
                    // Cannot happen with more than 64 KiB declared; refuse rather than lose it.
                    _ => return Ok(Err(411)),
                }
            }
            Ok(Ok(Captured::Prefix(read.freeze())))
        }
        _ => {
            downstream.enable_retry_buffering();
            loop {
                match downstream.read_request_body().await? {
                    Some(chunk) => read.extend_from_slice(&chunk),
                    None => break,
                }
                if read.len() as u64 > cap {
                    return Ok(Err(413));
                }
                if downstream.is_body_done() {
                    break;
                }
                if downstream.retry_buffer_truncated() {
                    // Over 64 KiB without a declared length and not finished: route on the
                    // prefix; pingora will not replay it (its buffer gave up), we put it back.
                    return Ok(Ok(Captured::Prefix(read.freeze())));
                }
            }
            if downstream.retry_buffer_truncated() {
                return Ok(Err(411));
            }
            Ok(Ok(Captured::Whole(read.freeze())))
        }
    }
}

impl InferenceCtx {
    /// Puts a large body's prefix back in front of the first chunk pingora forwards.
    pub fn body_chunk(&mut self, body: &mut Option<Bytes>) {
        let Some(prefix) = self.pending.take() else {
            return;
        };
        self.prefix_sent = true;
        let mut joined =
            BytesMut::with_capacity(prefix.len() + body.as_ref().map_or(0, Bytes::len));
        joined.extend_from_slice(&prefix);
        if let Some(rest) = body.as_ref() {
            joined.extend_from_slice(rest);
        }
        *body = Some(joined.freeze());
    }

    /// A server was chosen for an attempt: count the decision, start the clock.
    pub fn chosen(&mut self, upstream: &UpstreamRuntime, pick: &Pick) {
        let Some(facts) = &self.facts else {
            return;
        };
        let Some(metrics) = &upstream.inference_metrics else {
            return;
        };
        if let Some(choice) = pick.choice {
            metrics.decision(
                &upstream.name,
                &pick.member.address,
                upstream.balance.name(),
                choice.reason.as_str(),
                choice
                    .predicted
                    .map_or(choice.matched_blocks as u64 * TOKENS_PER_BLOCK, |p| {
                        p.cached_tokens as u64
                    }),
            );
        }
        self.attempt_started = Some(Instant::now());
        self.last_chunk = None;
        self.prefill_sample = pick
            .choice
            .and_then(|c| c.predicted)
            .filter(|p| p.times_prefill)
            .map(|p| (pick.member.state.clone(), p.uncached_tokens));
        self.handles = metrics.handles(&upstream.name, &pick.member.address, &facts.model);
    }

    /// A response body chunk went to the client: time to first token, then gaps between chunks.
    pub fn response_chunk(&mut self, len: usize) {
        if len == 0 {
            return;
        }
        let (Some(handles), Some(started)) = (&self.handles, self.attempt_started) else {
            return;
        };
        let now = Instant::now();
        match self.last_chunk {
            None => {
                let ttft = now.duration_since(started);
                handles.ttft.observe(ttft.as_secs_f64());
                if let Some((server, tokens)) = self.prefill_sample.take() {
                    server.model.observe_first_token(tokens, ttft);
                }
            }
            Some(last) => handles
                .inter_chunk
                .observe(now.duration_since(last).as_secs_f64()),
        }
        self.last_chunk = Some(now);
    }
}
