//! One completion from queue to last token: wait for a batch slot, prefill the uncached prompt,
//! then emit tokens at the batch-dependent pace, as SSE frames or one JSON. The [`Generation`] lives
//! inside the response body (or the handler future), so when the client goes away and the server
//! drops it, its slot and cache blocks are freed at once and the request counts as cancelled.

use std::io;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use futures_util::stream::{self, Stream};
use hyper::body::Frame;
use serde_json::Value;

use super::node::{Node, Outcome, Queued, Slot};
use super::openai::{sse_done, sse_event, ResponseId, Usage};
use super::request::CompletionRequest;
use super::timing::{inter_token_time, output_tokens, prefill_time, token_text};
use super::tokenizer;

/// The connection is dropped on purpose (the `kill_after_tokens` fault).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Killed;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Start,
    Tokens,
    Finish,
    Usage,
    Done,
    End,
}

/// The state of one completion in flight.
#[derive(Debug)]
pub struct Generation {
    node: Arc<Node>,
    req: CompletionRequest,
    id: ResponseId,
    /// The prompt's token ids.
    tokens: Vec<u32>,
    /// Tokens counted for the prompt (at least one, as an empty prompt still costs a step).
    prompt_tokens: u32,
    output_tokens: u32,
    arrived: Instant,
    queued: Option<Queued>,
    slot: Option<Slot>,
    emitted: u32,
    phase: Phase,
    /// The outcome is counted (otherwise dropping counts a cancellation).
    ended: bool,
}

impl Generation {
    pub fn new(node: Arc<Node>, req: CompletionRequest, queued: Queued) -> Self {
        let id = ResponseId::new(req.endpoint, node.next_serial(), &req.model);
        let output = output_tokens(
            req.max_tokens,
            node.cfg.default_max_tokens,
            node.cfg.max_tokens_cap,
        );
        let tokens = tokenizer::encode(&req.prompt);
        Generation {
            prompt_tokens: u32::try_from(tokens.len().max(1)).unwrap_or(u32::MAX),
            tokens,
            output_tokens: output,
            arrived: Instant::now(),
            queued: Some(queued),
            slot: None,
            emitted: 0,
            phase: Phase::Start,
            ended: false,
            node,
            req,
            id,
        }
    }

    fn usage(&self) -> Usage {
        Usage {
            prompt_tokens: self.prompt_tokens,
            completion_tokens: self.emitted,
        }
    }

    /// `length` when the request's own limit stopped it, `stop` otherwise.
    fn finish_reason(&self) -> &'static str {
        if self.req.max_tokens.is_some() {
            "length"
        } else {
            "stop"
        }
    }

    fn end(&mut self, outcome: Outcome) {
        self.ended = true;
        self.node
            .finish(&self.req.model, self.prompt_tokens, outcome);
        // Free the slot now rather than when the body is dropped.
        self.slot = None;
    }

    /// Waits for a slot and prefills; returns `false` if no slot can ever come.
    async fn admit(&mut self) -> bool {
        let Some(queued) = self.queued.take() else {
            return self.slot.is_some();
        };
        let Some(mut slot) = queued.slot().await else {
            return false;
        };
        let cached = slot.lookup_prefix(&self.tokens, self.prompt_tokens);
        self.slot = Some(slot);
        let uncached = self.prompt_tokens.saturating_sub(cached);
        let slow = self.node.faults().slow_factor;
        let prefill = prefill_time(uncached, self.node.cfg.prefill_tokens_per_sec, slow);
        if !prefill.is_zero() {
            tokio::time::sleep_until(self.node.reserve_prefill(prefill)).await;
        }
        self.node
            .observe_ttft(&self.req.model, self.arrived.elapsed().as_secs_f64());
        true
    }

    /// The next output token, after the inter-token delay; `Ok(None)` when all are out.
    async fn next_token(&mut self) -> Result<Option<String>, Killed> {
        if self.emitted >= self.output_tokens {
            return Ok(None);
        }
        let faults = self.node.faults();
        if self.emitted > 0 {
            let cfg = &self.node.cfg;
            let delay = inter_token_time(
                cfg.decode_ms,
                self.node.running(),
                cfg.batch_slowdown,
                faults.slow_factor,
            );
            if delay.is_zero() {
                tokio::task::yield_now().await;
            } else {
                tokio::time::sleep(delay).await;
            }
        }
        // The kill comes while the next token is being made, so the tokens before it have
        // been flushed to the client.
        if faults.kill_after_tokens.is_some_and(|n| self.emitted >= n) {
            self.end(Outcome::Killed);
            return Err(Killed);
        }
        let text = token_text(self.emitted);
        self.emitted += 1;
        Ok(Some(text))
    }

    /// Runs to the end and returns the whole (non-streamed) response.
    pub async fn run_whole(mut self) -> Result<Value, Killed> {
        if !self.admit().await {
            self.end(Outcome::Cancelled);
            return Err(Killed);
        }
        let mut text = String::new();
        while let Some(token) = self.next_token().await? {
            text.push_str(&token);
        }
        let whole = self.id.whole(&text, self.finish_reason(), self.usage());
        self.end(Outcome::Served {
            completion_tokens: self.emitted,
        });
        Ok(whole)
    }

    /// The next SSE frame of a streamed response; `None` after `[DONE]`.
    async fn next_frame(&mut self) -> Option<Result<Frame<Bytes>, io::Error>> {
        loop {
            match self.phase {
                Phase::Start => {
                    if !self.admit().await {
                        self.end(Outcome::Cancelled);
                        return Some(Err(killed_error()));
                    }
                    self.phase = Phase::Tokens;
                    if let Some(role) = self.id.role_chunk() {
                        return Some(Ok(Frame::data(sse_event(&role))));
                    }
                }
                Phase::Tokens => match self.next_token().await {
                    Ok(Some(token)) => {
                        let chunk = self.id.token_chunk(&token);
                        return Some(Ok(Frame::data(sse_event(&chunk))));
                    }
                    Ok(None) => self.phase = Phase::Finish,
                    Err(Killed) => {
                        self.phase = Phase::End;
                        return Some(Err(killed_error()));
                    }
                },
                Phase::Finish => {
                    self.phase = if self.req.include_usage {
                        Phase::Usage
                    } else {
                        Phase::Done
                    };
                    let chunk = self.id.finish_chunk(self.finish_reason());
                    return Some(Ok(Frame::data(sse_event(&chunk))));
                }
                Phase::Usage => {
                    self.phase = Phase::Done;
                    let chunk = self.id.usage_chunk(self.usage());
                    return Some(Ok(Frame::data(sse_event(&chunk))));
                }
                Phase::Done => {
                    self.phase = Phase::End;
                    self.end(Outcome::Served {
                        completion_tokens: self.emitted,
                    });
                    return Some(Ok(Frame::data(sse_done())));
                }
                Phase::End => return None,
            }
        }
    }

    /// The streamed response body's frames.
    pub fn into_sse(self) -> impl Stream<Item = Result<Frame<Bytes>, io::Error>> + Send {
        stream::unfold(self, |mut generation| async move {
            let frame = generation.next_frame().await?;
            Some((frame, generation))
        })
    }
}

fn killed_error() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionAborted,
        "simulated node dropped the stream",
    )
}

impl Drop for Generation {
    fn drop(&mut self) {
        if !self.ended {
            self.node
                .finish(&self.req.model, self.prompt_tokens, Outcome::Cancelled);
        }
    }
}
