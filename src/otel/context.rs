//! W3C trace context: the parent a request's `traceparent` (and `tracestate`) names, read with
//! the SDK's own propagator, and the `traceparent` value a span hands to the upstream.

use http::{HeaderMap, HeaderValue};
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{SpanContext, TraceContextExt};
use opentelemetry::Context;
use opentelemetry_http::HeaderExtractor;
use opentelemetry_sdk::propagation::TraceContextPropagator;

/// The request header naming the caller's span.
pub const TRACEPARENT: &str = "traceparent";
/// The vendor state that travels with it.
pub const TRACESTATE: &str = "tracestate";

/// The context a request's span starts in: the caller's span when `headers` carry a valid
/// `traceparent`, else an empty one (the span starts a trace).
pub fn parent(headers: &HeaderMap) -> Context {
    if !headers.contains_key(TRACEPARENT) {
        return Context::new();
    }
    TraceContextPropagator::new().extract(&HeaderExtractor(headers))
}

/// `traceparent` naming `span` (version 00), sampled flag included.
pub fn traceparent(span: &SpanContext) -> HeaderValue {
    let value = format!(
        "00-{}-{}-{:02x}",
        span.trace_id(),
        span.span_id(),
        span.trace_flags().to_u8()
    );
    // Hex digits and dashes only.
    HeaderValue::from_str(&value).unwrap_or(HeaderValue::from_static(""))
}

/// The span context a parent context carries, if any (invalid when the request started a trace).
pub fn parent_span(parent: &Context) -> SpanContext {
    parent.span().span_context().clone()
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::{SpanId, TraceFlags, TraceId, TraceState};

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn a_valid_traceparent_is_the_parent_with_its_state() {
        let cx = parent(&headers(&[
            (
                TRACEPARENT,
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            ),
            (TRACESTATE, "vendor=abc"),
        ]));
        let span = parent_span(&cx);
        assert!(span.is_valid() && span.is_remote() && span.is_sampled());
        assert_eq!(
            span.trace_id(),
            TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap()
        );
        assert_eq!(
            span.span_id(),
            SpanId::from_hex("00f067aa0ba902b7").unwrap()
        );
        assert_eq!(span.trace_state().get("vendor"), Some("abc"));
    }

    #[test]
    fn a_missing_or_malformed_traceparent_starts_a_trace() {
        for bad in [
            None,
            Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7"),
            Some("00-00000000000000000000000000000000-00f067aa0ba902b7-01"),
            Some("zz-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
            Some("00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01"),
        ] {
            let map = match bad {
                Some(value) => headers(&[(TRACEPARENT, value)]),
                None => HeaderMap::new(),
            };
            assert!(!parent_span(&parent(&map)).is_valid(), "{bad:?}");
        }
    }

    #[test]
    fn traceparent_names_the_span_and_its_sampled_flag() {
        let span = SpanContext::new(
            TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap(),
            SpanId::from_hex("00f067aa0ba902b7").unwrap(),
            TraceFlags::SAMPLED,
            false,
            TraceState::default(),
        );
        assert_eq!(
            traceparent(&span),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        );
        let unsampled = SpanContext::new(
            span.trace_id(),
            span.span_id(),
            TraceFlags::default(),
            false,
            TraceState::default(),
        );
        assert!(traceparent(&unsampled).to_str().unwrap().ends_with("-00"));
    }
}
