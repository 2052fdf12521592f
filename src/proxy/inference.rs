//! The inference side of the request path: reads an OpenAI request's body before a server is
//! chosen (whole up to [`PREFIX_TARGET`], the first [`PREFIX_TARGET`] bytes of larger ones), routes
//! by its model, answers `GET /v1/models` with the merged list, refuses bad bodies in OpenAI's
//! error format, and times the response (time to first token, gaps between streamed chunks).
//!
//! The bytes read go into the request's [`Replay`]: every attempt sends them first, byte for byte,
//! and the rest of the body follows as the client sends it. A body that fits in
//! [`super::body::REPLAY_LIMIT`] can still go to another server after a failure.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use http::header::CONTENT_LENGTH;
use pingora::protocols::http::ServerSession;

use super::body::{Replay, RequestBody};
use super::error::EdgeError;
use super::respond::{openai_error_body, LocalResponse};
use crate::inference::metrics::InferenceHandles;
use crate::inference::openai::{self, BodyError};
use crate::inference::prefix::BLOCK_CHARS;
use crate::inference::request::{endpoint, Endpoint, InferenceFacts};
use crate::pool::{Pick, ServerState};
use crate::runtime::UpstreamRuntime;

/// How much of a large body is read for routing (the model and the prompt's first blocks).
pub const PREFIX_TARGET: usize = 256 * 1024;
/// Roughly how many tokens one prefix block holds (4 characters a token).
const TOKENS_PER_BLOCK: u64 = (BLOCK_CHARS / 4) as u64;

/// Per-request inference state.
#[derive(Default)]
pub struct InferenceCtx {
    pub facts: Option<InferenceFacts>,
    /// When the current attempt's server was chosen.
    attempt_started: Option<Instant>,
    last_chunk: Option<Instant>,
    /// When the first response byte went to the client.
    first_chunk: Option<Instant>,
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

fn reject(upstream: &UpstreamRuntime, status: u16, reason: &'static str, body: String) -> Prepared {
    if let Some(metrics) = &upstream.inference_metrics {
        metrics.rejected(&upstream.name, reason);
    }
    Prepared::Answer(LocalResponse::json(status, body))
}

/// Looks at an inference request before a server is chosen. `cap` is the most body bytes
/// accepted; what is read is counted in `body` and held in its replay.
pub async fn prepare(
    session: &mut ServerSession,
    upstream: &UpstreamRuntime,
    cap: u64,
    body: &mut RequestBody,
    ctx: &mut InferenceCtx,
) -> Result<Prepared, EdgeError> {
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
            let Some(read) = capture(session, cap, body).await? else {
                let too_large = openai_error_body(413).to_string();
                return Ok(reject(upstream, 413, "too_large", too_large));
            };
            let prefix_only = !body.done;
            let parsed = if prefix_only {
                openai::parse_prefix(&read)
            } else {
                openai::parse_request(&read)
            };
            let request = match parsed {
                Ok(request) => request,
                // The model may come after the bytes read: balance without it.
                Err(BodyError::MissingModel) if prefix_only => return Ok(Prepared::Proxy),
                Err(error) => {
                    let answer = openai::bad_request(&error);
                    let reason = match error {
                        BodyError::Malformed(_) => "bad_request",
                        BodyError::MissingModel => "missing_model",
                    };
                    return Ok(reject(upstream, 400, reason, answer));
                }
            };
            if !model_may_exist(upstream, &request.model) {
                let answer = openai::model_not_found(&request.model);
                return Ok(reject(upstream, 404, "model_not_found", answer));
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

/// Reads the body for routing: until it ends or [`PREFIX_TARGET`] bytes are in. The bytes go to
/// `body`'s replay (sent first on every attempt) and come back joined for parsing; `None` when
/// the body is larger than `cap`. `body.done` tells whether it is the whole body.
async fn capture(
    session: &mut ServerSession,
    cap: u64,
    body: &mut RequestBody,
) -> Result<Option<Bytes>, EdgeError> {
    if session.is_body_empty() {
        body.done = true;
        return Ok(Some(Bytes::new()));
    }
    let declared: Option<u64> = session
        .req_header()
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok());
    if declared.is_some_and(|len| len > cap) {
        return Ok(None);
    }
    let mut held = Replay::default();
    while held.len() < PREFIX_TARGET {
        let chunk = session
            .read_request_body()
            .await
            .map_err(|e| EdgeError::downstream(&e))?;
        let Some(chunk) = chunk else {
            body.done = true;
            break;
        };
        body.read += chunk.len() as u64;
        if body.read > cap {
            return Ok(None);
        }
        held.hold(chunk);
        if session.is_body_done() {
            body.done = true;
            break;
        }
    }
    let joined = match held.chunks() {
        [] => Bytes::new(),
        [one] => one.clone(),
        many => {
            let mut joined = BytesMut::with_capacity(held.len());
            for chunk in many {
                joined.extend_from_slice(chunk);
            }
            joined.freeze()
        }
    };
    body.replay.hold(joined.clone());
    Ok(Some(joined))
}

impl InferenceCtx {
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

    /// When the first response byte went to the client, if one did.
    pub fn first_chunk(&self) -> Option<Instant> {
        self.first_chunk
    }

    /// A response body chunk went to the client: time to first token, then gaps between chunks.
    pub fn response_chunk(&mut self, len: usize) {
        if len == 0 {
            return;
        }
        if self.first_chunk.is_none() {
            self.first_chunk = Some(Instant::now());
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
