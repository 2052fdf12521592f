//! The response body from server to client, chunk by chunk as the server sends it (token
//! streams are never held back): the quota meter, the trace's usage reader and the inference
//! timings see each chunk, empty
//! chunks are never forwarded (an h2 client counts empty DATA frames as a flood), and the last
//! chunk carries the end of the stream. Meanwhile the rest of the client's body still goes to
//! the server, and a client that goes away ends the exchange (the server connection is then
//! dropped, which cancels the work there).

use pingora::protocols::http::ServerSession;

use super::attempt::{client_event, take_client_event, Attempt, Failed};
use super::body::RequestBody;
use super::error::EdgeError;
use super::inference::InferenceCtx;
use crate::inference::usage::UsageReader;
use crate::security::quota::Meter;

/// Who watches the response body go by.
pub struct Watchers<'a> {
    pub meter: Option<&'a mut Meter>,
    /// Reads the usage for the trace when no meter does.
    pub usage: Option<&'a mut UsageReader>,
    pub inference: &'a mut InferenceCtx,
}

/// Relays the response body after its head went to the client.
pub async fn relay(
    session: &mut ServerSession,
    attempt: &mut Attempt,
    body: &mut RequestBody,
    mut watchers: Watchers<'_>,
) -> Result<(), Failed> {
    // Whether the client's body still goes to the server (it stops when the server stops
    // reading it: the response then came first).
    let mut sending = true;
    loop {
        if attempt.session.is_body_done() {
            if let Some(meter) = watchers.meter.as_deref_mut() {
                meter.feed(None, true);
            }
            if let Some(usage) = watchers.usage.as_deref_mut() {
                usage.feed(None, true);
            }
            return session
                .finish_body()
                .await
                .map_err(|e| Failed::Client(EdgeError::downstream(&e)));
        }
        tokio::select! {
            biased;
            read = attempt.session.read_body_bytes() => {
                let chunk = read.map_err(|e| Failed::Server {
                    error: EdgeError::upstream(&e, true),
                    sent: true,
                })?;
                let end = chunk.is_none() || attempt.session.is_body_done();
                let chunk = chunk.unwrap_or_default();
                if let Some(meter) = watchers.meter.as_deref_mut() {
                    meter.feed(Some(&chunk), end);
                }
                if let Some(usage) = watchers.usage.as_deref_mut() {
                    usage.feed(Some(&chunk), end);
                }
                watchers.inference.response_chunk(chunk.len());
                if !chunk.is_empty() || end {
                    session
                        .write_response_body(chunk, end)
                        .await
                        .map_err(|e| Failed::Client(EdgeError::downstream(&e)))?;
                }
                if end {
                    return Ok(());
                }
            }
            event = client_event(session, body.done), if sending => {
                match take_client_event(event, session, attempt, body).await {
                    Ok(()) => {}
                    Err(Failed::Client(error)) => return Err(Failed::Client(error)),
                    // The server no longer reads the body: its response came first.
                    Err(Failed::Server { .. }) => sending = false,
                }
            }
        }
    }
}
