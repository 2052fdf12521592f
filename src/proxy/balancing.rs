//! The balancing side of the request path: choosing (and queueing for) a server, the sticky
//! cookie kept from the backend, passive health observations, and which failures may be retried
//! where. (The cookie is set on responses in [`super::reply`].)

use std::net::IpAddr;
use std::time::Instant;

use http::header::COOKIE;
use http::{HeaderMap, HeaderValue, Method};

use super::error::EdgeError;
use crate::balance::sticky::strip_cookie;
use crate::config::model::StickyMode;
use crate::inference::request::InferenceFacts;
use crate::pool::{Pick, Refusal, RequestInfo};
use crate::runtime::UpstreamRuntime;

/// What a failed attempt allows next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryFacts {
    /// Attempts made so far, the failed one included.
    pub attempts: usize,
    /// The upstream's `retries`.
    pub retries: u32,
    /// Servers of the upstream not tried yet (the failed one excluded).
    pub untried: usize,
    /// The request reached the server (head or body sent) before failing.
    pub sent: bool,
    pub idempotent: bool,
    /// The request body could not be kept whole for a replay.
    pub body_truncated: bool,
    /// Response bytes already reached the client.
    pub responded: bool,
}

/// Whether to retry on another server: only while retries and untried servers remain, never
/// after the client got response bytes, and after the request was sent only when idempotent
/// and its body can be replayed.
pub fn may_retry(f: &RetryFacts) -> bool {
    let budget = f.attempts <= f.retries as usize && f.untried > 0;
    let safe = !f.sent || (f.idempotent && !f.body_truncated);
    budget && safe && !f.responded
}

/// GET, HEAD, OPTIONS, TRACE, PUT, DELETE (RFC 9110 §9.2.2).
pub fn idempotent(method: &Method) -> bool {
    method.is_idempotent()
}

/// Picks a server for this attempt, waiting in the queue when all are busy. `client_ip` is the
/// resolved client address (PROXY header, or a trusted proxy's X-Forwarded-For), which
/// `client_ip` stickiness and hashing follow.
pub async fn choose(
    upstream: &UpstreamRuntime,
    headers: &HeaderMap,
    client_ip: Option<IpAddr>,
    tried: &[u64],
    inference: Option<&InferenceFacts>,
) -> Result<Pick, EdgeError> {
    let req = RequestInfo {
        client_ip,
        headers,
        tried,
        inference,
    };
    upstream
        .pool
        .acquire(&upstream.rules(), &req, &upstream.queue)
        .await
        .map_err(|refusal| match refusal {
            Refusal::Unavailable => EdgeError::NoServer,
            Refusal::Overloaded { retry_after_secs } => EdgeError::Overloaded {
                retry_after: retry_after_secs,
            },
        })
}

/// `indirect`: the backend never sees the sticky cookie.
pub fn strip_sticky_cookie(
    upstream: &UpstreamRuntime,
    headers: &mut HeaderMap,
) -> Result<(), EdgeError> {
    let Some(StickyMode::Cookie { name }) = upstream.sticky.as_ref().map(|s| &s.mode) else {
        return Ok(());
    };
    let kept: Vec<String> = headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| strip_cookie(v, name))
        .collect();
    headers.remove(COOKIE);
    if !kept.is_empty() {
        let value = HeaderValue::from_str(&kept.join("; ")).map_err(|_| EdgeError::BadRequest)?;
        headers.insert(COOKIE, value);
    }
    Ok(())
}

/// Records the response status as a passive health observation.
pub fn observe_response(upstream: &UpstreamRuntime, pick: &Pick, status: u16) {
    if status >= 500 {
        pick.member
            .state
            .record_failure(&upstream.health, "5xx", Instant::now());
    } else {
        pick.member.state.record_success();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> RetryFacts {
        RetryFacts {
            attempts: 1,
            retries: 2,
            untried: 2,
            sent: false,
            idempotent: false,
            body_truncated: false,
            responded: false,
        }
    }

    #[test]
    fn connect_failures_retry_any_method_within_budget() {
        assert!(may_retry(&facts()));
        assert!(may_retry(&RetryFacts {
            attempts: 2,
            ..facts()
        }));
        assert!(!may_retry(&RetryFacts {
            attempts: 3,
            ..facts()
        }));
        assert!(!may_retry(&RetryFacts {
            untried: 0,
            ..facts()
        }));
        assert!(!may_retry(&RetryFacts {
            retries: 0,
            ..facts()
        }));
    }

    #[test]
    fn sent_requests_retry_only_when_idempotent_and_unanswered() {
        let sent = RetryFacts {
            sent: true,
            ..facts()
        };
        assert!(!may_retry(&sent));
        assert!(may_retry(&RetryFacts {
            idempotent: true,
            ..sent
        }));
        assert!(!may_retry(&RetryFacts {
            idempotent: true,
            body_truncated: true,
            ..sent
        }));
        assert!(!may_retry(&RetryFacts {
            idempotent: true,
            responded: true,
            ..sent
        }));
        assert!(idempotent(&Method::GET) && idempotent(&Method::PUT));
        assert!(!idempotent(&Method::POST) && !idempotent(&Method::PATCH));
    }
}
