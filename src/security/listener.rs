//! Per-request limits of a listener, applied as soon as the request head is parsed: the number
//! of header fields (`max_headers`, 431 beyond it) and the idle keep-alive timeout before the
//! connection's next request (`idle_timeout`).

use pingora::prelude::*;
use pingora::{Error, ErrorType};

use crate::config::model::ListenerLimits;

/// Whether a head with `fields` header fields is within `limits`.
pub fn fields_allowed(fields: usize, limits: &ListenerLimits) -> bool {
    fields <= limits.max_headers as usize
}

/// Seconds pingora keeps an idle keep-alive connection for `limits` (at least 1: 0 would mean
/// forever).
pub fn idle_secs(limits: &ListenerLimits) -> u64 {
    limits.idle_timeout.as_secs_f64().ceil().max(1.0) as u64
}

/// Refuses a head with too many fields (431) and sets the keep-alive idle timeout of a
/// connection that stays open (one the client asked to close stays closing).
pub fn head_limits(session: &mut Session, limits: &ListenerLimits) -> Result<()> {
    if !fields_allowed(session.req_header().headers.len(), limits) {
        return Error::e_explain(ErrorType::HTTPStatus(431), "too many request header fields");
    }
    if session.get_keepalive().is_some() {
        session.set_keepalive(Some(idle_secs(limits)));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn field_counts_and_idle_seconds() {
        let limits = ListenerLimits {
            max_headers: 3,
            idle_timeout: Duration::from_millis(1500),
            ..Default::default()
        };
        assert!(fields_allowed(3, &limits));
        assert!(!fields_allowed(4, &limits));
        assert_eq!(idle_secs(&limits), 2);
        let tiny = ListenerLimits {
            idle_timeout: Duration::from_millis(10),
            ..Default::default()
        };
        assert_eq!(idle_secs(&tiny), 1);
    }
}
