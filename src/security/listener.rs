//! Per-request limits of a listener, applied as soon as the request head is parsed: the number
//! of header fields (`max_headers`, 431 beyond it). (`idle_timeout` between keep-alive requests is
//! kept by the request path's connection loops.)

use crate::config::model::ListenerLimits;

/// Whether a head with `fields` header fields is within `limits`.
pub fn fields_allowed(fields: usize, limits: &ListenerLimits) -> bool {
    fields <= limits.max_headers as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_counts() {
        let limits = ListenerLimits {
            max_headers: 3,
            ..Default::default()
        };
        assert!(fields_allowed(3, &limits));
        assert!(!fields_allowed(4, &limits));
    }
}
