//! The request path's one error vocabulary ([`EdgeError`]): every way an exchange can end short
//! of a relayed response, with what it means for the client (status, `Retry-After`) and the short
//! kind name the access log and the status page show. [`super::respond::for_error`] turns it into
//! the answer.

use pingora::{Error, ErrorType};

/// Why an exchange could not be completed as a relayed response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EdgeError {
    /// The request head cannot be read as HTTP, or its framing or authority is ambiguous (400).
    BadRequest,
    /// More header fields or bytes than the listener allows (431).
    HeadTooLarge,
    /// CONNECT: ferrogate tunnels only WebSocket upgrades, it is no forward proxy (405).
    MethodNotAllowed,
    /// The request body grew past the route's `max_body` (413).
    BodyTooLarge,
    /// No server of the upstream can take the request now (503).
    NoServer,
    /// Every server is busy and the queue is full or the wait ran out (503 with Retry-After).
    Overloaded { retry_after: u64 },
    /// Connecting to the chosen server failed (502, or 504 when it timed out).
    Connect(ErrorType),
    /// The server failed after the request reached it: reset, closed, unreadable answer or no
    /// answer within `timeouts.read` (502, or 504 on a timeout).
    Upstream(ErrorType),
    /// The client was too slow to send its request body (408).
    ClientTimeout,
    /// The client went away or broke the exchange off: nothing more is sent to it.
    ClientGone(ErrorType),
}

impl EdgeError {
    /// The failure of an upstream operation: connecting (`connected` false) or exchanging.
    pub fn upstream(error: &Error, connected: bool) -> Self {
        let kind = error.etype().clone();
        if connected {
            Self::Upstream(kind)
        } else {
            Self::Connect(kind)
        }
    }

    /// The failure of reading from or writing to the client.
    pub fn downstream(error: &Error) -> Self {
        match error.etype() {
            ErrorType::ReadTimedout => Self::ClientTimeout,
            ErrorType::InvalidHTTPHeader | ErrorType::InvalidH2 => Self::BadRequest,
            kind => Self::ClientGone(kind.clone()),
        }
    }

    /// The status answered, or `None` when the client is gone and nothing is sent.
    pub fn status(&self) -> Option<u16> {
        Some(match self {
            Self::BadRequest => 400,
            Self::HeadTooLarge => 431,
            Self::MethodNotAllowed => 405,
            Self::BodyTooLarge => 413,
            Self::NoServer | Self::Overloaded { .. } => 503,
            Self::Connect(kind) | Self::Upstream(kind) if timed_out(kind) => 504,
            Self::Connect(_) | Self::Upstream(_) => 502,
            Self::ClientTimeout => 408,
            Self::ClientGone(_) => return None,
        })
    }

    /// Seconds a client should wait before trying again, for an overload refusal.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            Self::Overloaded { retry_after } => Some(*retry_after),
            _ => None,
        }
    }

    /// The short kind name (access log `error`, the status page's recent errors): pingora's
    /// name for transport failures (`ConnectRefused`, `ReadTimedout`), ours for the rest.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::BadRequest => "BadRequest",
            Self::HeadTooLarge => "HeadTooLarge",
            Self::MethodNotAllowed => "MethodNotAllowed",
            Self::BodyTooLarge => "BodyTooLarge",
            Self::NoServer => "NoServer",
            Self::Overloaded { .. } => "Overloaded",
            Self::ClientTimeout => "ClientTimeout",
            Self::Connect(kind) | Self::Upstream(kind) | Self::ClientGone(kind) => kind.as_str(),
        }
    }

    /// Whether the server is to blame (what the status page records against it).
    pub fn is_upstream(&self) -> bool {
        matches!(self, Self::Connect(_) | Self::Upstream(_))
    }
}

/// Whether a transport failure was a timeout (answered 504 rather than 502).
fn timed_out(kind: &ErrorType) -> bool {
    matches!(
        kind,
        ErrorType::ConnectTimedout
            | ErrorType::ReadTimedout
            | ErrorType::WriteTimedout
            | ErrorType::TLSHandshakeTimedout
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_failures_map_to_gateway_codes() {
        let refused = Error::explain(ErrorType::ConnectRefused, "x");
        assert_eq!(EdgeError::upstream(&refused, false).status(), Some(502));
        assert_eq!(
            EdgeError::upstream(&refused, false).kind(),
            "ConnectRefused"
        );
        let slow = Error::explain(ErrorType::ConnectTimedout, "x");
        assert_eq!(EdgeError::upstream(&slow, false).status(), Some(504));
        let silent = Error::explain(ErrorType::ReadTimedout, "x");
        assert_eq!(EdgeError::upstream(&silent, true).status(), Some(504));
        let broken = Error::explain(ErrorType::H1Error, "x");
        assert_eq!(EdgeError::upstream(&broken, true).status(), Some(502));
        assert!(EdgeError::upstream(&broken, true).is_upstream());
    }

    #[test]
    fn client_failures_map_to_client_codes_or_silence() {
        let closed = Error::explain(ErrorType::ConnectionClosed, "x");
        assert_eq!(EdgeError::downstream(&closed).status(), None);
        let slow = Error::explain(ErrorType::ReadTimedout, "x");
        assert_eq!(EdgeError::downstream(&slow).status(), Some(408));
        let garbage = Error::explain(ErrorType::InvalidHTTPHeader, "x");
        assert_eq!(EdgeError::downstream(&garbage).status(), Some(400));
        assert!(!EdgeError::downstream(&garbage).is_upstream());
    }

    #[test]
    fn overload_carries_retry_after() {
        let e = EdgeError::Overloaded { retry_after: 3 };
        assert_eq!((e.status(), e.retry_after()), (Some(503), Some(3)));
        assert_eq!(EdgeError::NoServer.retry_after(), None);
        assert_eq!(EdgeError::HeadTooLarge.status(), Some(431));
        assert_eq!(EdgeError::MethodNotAllowed.status(), Some(405));
    }
}
