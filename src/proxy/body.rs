//! The request body as the request path keeps it: what was read ([`RequestBody`], counted against
//! the route's `max_body`) and what can be sent again on another server ([`Replay`]: every chunk
//! while the body stays within [`REPLAY_LIMIT`]). Bytes read before any server was chosen (an
//! inference request's body, read to route it) are held whatever their size until the first
//! attempt sent them. Pure bookkeeping; the exchange does the reading and writing.

use bytes::Bytes;

use super::error::EdgeError;

/// The most body kept for sending again on another server (pingora's retry buffer size).
pub const REPLAY_LIMIT: usize = 64 * 1024;

/// Chunks that can be sent again, in order.
#[derive(Debug, Default)]
pub struct Replay {
    chunks: Vec<Bytes>,
    len: usize,
    /// Bytes were let go: the body cannot be sent whole again.
    truncated: bool,
}

impl Replay {
    /// Holds `chunk`, read before the attempt that will send it.
    pub fn hold(&mut self, chunk: Bytes) {
        if !self.truncated && !chunk.is_empty() {
            self.len += chunk.len();
            self.chunks.push(chunk);
        }
    }

    /// The chunks every attempt sends first.
    pub fn chunks(&self) -> &[Bytes] {
        &self.chunks
    }

    /// Everything held reached the current attempt: beyond the limit, let it go.
    pub fn sent(&mut self) {
        if self.len > REPLAY_LIMIT {
            self.chunks = Vec::new();
            self.len = 0;
            self.truncated = true;
        }
    }

    /// `chunk` was read and sent on the current attempt.
    pub fn sent_chunk(&mut self, chunk: &Bytes) {
        self.hold(chunk.clone());
        self.sent();
    }

    /// Whether the body can no longer be sent whole to another server.
    pub fn truncated(&self) -> bool {
        self.truncated
    }

    /// Bytes held.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// The client's body as read so far.
#[derive(Debug, Default)]
pub struct RequestBody {
    pub replay: Replay,
    /// Bytes read from the client.
    pub read: u64,
    /// The route's `max_body`.
    pub limit: Option<u64>,
    /// The client's body ended (or there is none).
    pub done: bool,
}

impl RequestBody {
    /// Counts `len` more bytes read; refused past `max_body`.
    pub fn count(&mut self, len: usize) -> Result<(), EdgeError> {
        self.read += len as u64;
        match self.limit {
            Some(limit) if self.read > limit => Err(EdgeError::BodyTooLarge),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(len: usize) -> Bytes {
        Bytes::from(vec![b'x'; len])
    }

    #[test]
    fn small_bodies_stay_replayable() {
        let mut replay = Replay::default();
        replay.sent_chunk(&chunk(1000));
        replay.sent_chunk(&Bytes::new());
        replay.sent_chunk(&chunk(REPLAY_LIMIT - 1000));
        assert!(!replay.truncated());
        assert_eq!(replay.chunks().len(), 2, "empty chunks are not kept");
        assert_eq!(replay.len(), REPLAY_LIMIT);
        replay.sent_chunk(&chunk(1));
        assert!(replay.truncated() && replay.is_empty());
        replay.sent_chunk(&chunk(1));
        assert!(replay.is_empty(), "nothing is kept once truncated");
    }

    #[test]
    fn bytes_read_for_routing_are_held_until_sent() {
        let mut replay = Replay::default();
        replay.hold(chunk(3 * REPLAY_LIMIT));
        assert_eq!(replay.chunks().len(), 1);
        assert!(!replay.truncated());
        replay.sent();
        assert!(replay.truncated() && replay.chunks().is_empty());
    }

    #[test]
    fn max_body_counts_every_byte() {
        let mut body = RequestBody {
            limit: Some(10),
            ..Default::default()
        };
        assert!(body.count(10).is_ok());
        assert_eq!(body.count(1), Err(EdgeError::BodyTooLarge));
        let mut unlimited = RequestBody::default();
        assert!(unlimited.count(usize::MAX / 2).is_ok());
    }
}
