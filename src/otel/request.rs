//! The spans of one request: a SERVER span for the request as the client sees it, and a CLIENT
//! span per upstream attempt whose context travels upstream in `traceparent`. Attribute names
//! follow OpenTelemetry's HTTP and GenAI semantic conventions; spans end when dropped, so a
//! request cut short still reports what it did.

use std::sync::Arc;
use std::time::Duration;

use http::HeaderValue;
use opentelemetry::trace::{Span as _, SpanKind, Status, TraceContextExt as _, Tracer as _};
use opentelemetry::{Context, KeyValue};

use super::{context, Pipeline};

/// What the request span knows when it starts.
#[derive(Debug, Clone, Copy)]
pub struct Incoming<'a> {
    pub method: &'a str,
    pub path: &'a str,
    /// `http` or `https`.
    pub scheme: &'a str,
    /// The Host (or :authority) the client asked for; empty when none.
    pub host: &'a str,
    pub client: Option<std::net::IpAddr>,
    /// `1.0`, `1.1` or `2`.
    pub protocol: &'static str,
    pub user_agent: Option<&'a str>,
}

/// What an inference request used, for the GenAI attributes.
#[derive(Debug, Clone, Default)]
pub struct GenAi<'a> {
    /// `chat`, `text_completion`, `embeddings`.
    pub operation: &'a str,
    pub model: &'a str,
    pub input_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
    /// From the request's arrival to the first token sent back.
    pub time_to_first_token: Option<Duration>,
}

/// The request's span; attempts are its children.
pub struct RequestTrace {
    pipeline: Arc<Pipeline>,
    /// Holds the request span (ended when the last clone of this context goes).
    cx: Context,
    method: Box<str>,
}

impl std::fmt::Debug for RequestTrace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestTrace")
            .field("span", self.cx.span().span_context())
            .finish_non_exhaustive()
    }
}

impl Pipeline {
    /// Starts the span of a request that continues the trace of `parent` (see
    /// [`context::parent`]) or starts one.
    pub fn start(self: &Arc<Self>, parent: &Context, incoming: Incoming<'_>) -> RequestTrace {
        let mut attributes = Vec::with_capacity(8);
        attributes.push(KeyValue::new(
            "http.request.method",
            incoming.method.to_string(),
        ));
        attributes.push(KeyValue::new("url.path", incoming.path.to_string()));
        attributes.push(KeyValue::new("url.scheme", incoming.scheme.to_string()));
        attributes.push(KeyValue::new("network.protocol.version", incoming.protocol));
        if !incoming.host.is_empty() {
            attributes.push(KeyValue::new("server.address", incoming.host.to_string()));
        }
        if let Some(client) = incoming.client {
            attributes.push(KeyValue::new("client.address", client.to_string()));
        }
        if let Some(agent) = incoming.user_agent {
            attributes.push(KeyValue::new("user_agent.original", agent.to_string()));
        }
        let span = self
            .tracer
            .span_builder(incoming.method.to_string())
            .with_kind(SpanKind::Server)
            .with_attributes(attributes)
            .start_with_context(&self.tracer, parent);
        RequestTrace {
            pipeline: self.clone(),
            cx: parent.with_span(span),
            method: incoming.method.into(),
        }
    }
}

impl RequestTrace {
    /// The route that took the request and the upstream it goes to (`None`: answered here).
    pub fn route(&self, route: &str, upstream: Option<&str>) {
        let span = self.cx.span();
        span.update_name(format!("{} {route}", self.method));
        span.set_attribute(KeyValue::new("http.route", route.to_string()));
        if let Some(upstream) = upstream {
            span.set_attribute(KeyValue::new("ferrogate.upstream", upstream.to_string()));
        }
    }

    /// Starts the span of attempt number `attempt` (0 = the first) at upstream server `address`.
    pub fn attempt(&self, address: &str, attempt: u32) -> AttemptTrace {
        let tracer = &self.pipeline.tracer;
        let (host, port) = split_address(address);
        let mut attributes = vec![
            KeyValue::new("http.request.method", self.method.to_string()),
            KeyValue::new("server.address", host.to_string()),
        ];
        if let Some(port) = port {
            attributes.push(KeyValue::new("server.port", i64::from(port)));
        }
        if attempt > 0 {
            attributes.push(KeyValue::new(
                "http.request.resend_count",
                i64::from(attempt),
            ));
        }
        let span = tracer
            .span_builder(self.method.to_string())
            .with_kind(SpanKind::Client)
            .with_attributes(attributes)
            .start_with_context(tracer, &self.cx);
        let traceparent = context::traceparent(span.span_context());
        AttemptTrace { span, traceparent }
    }

    /// The `traceparent` for an upstream when no attempt span is open (the request span's).
    pub fn traceparent(&self) -> HeaderValue {
        context::traceparent(self.cx.span().span_context())
    }

    /// The GenAI attributes of an inference request.
    pub fn gen_ai(&self, usage: &GenAi<'_>) {
        let span = self.cx.span();
        if !usage.operation.is_empty() {
            span.set_attribute(KeyValue::new(
                "gen_ai.operation.name",
                usage.operation.to_string(),
            ));
        }
        if !usage.model.is_empty() {
            span.set_attribute(KeyValue::new(
                "gen_ai.request.model",
                usage.model.to_string(),
            ));
        }
        if let Some(tokens) = usage.input_tokens {
            span.set_attribute(KeyValue::new("gen_ai.usage.input_tokens", saturate(tokens)));
        }
        if let Some(tokens) = usage.output_tokens {
            span.set_attribute(KeyValue::new(
                "gen_ai.usage.output_tokens",
                saturate(tokens),
            ));
        }
        if let Some(ttft) = usage.time_to_first_token {
            span.set_attribute(KeyValue::new(
                "gen_ai.server.time_to_first_token",
                ttft.as_secs_f64(),
            ));
        }
    }

    /// The status sent to the client; 5xx marks the span failed.
    pub fn respond(&self, status: u16) {
        let span = self.cx.span();
        span.set_attribute(KeyValue::new(
            "http.response.status_code",
            i64::from(status),
        ));
        if status >= 500 {
            span.set_attribute(KeyValue::new("error.type", status.to_string()));
            span.set_status(Status::error(""));
        }
    }

    /// The request failed before a status was sent (`kind`: a short error name).
    pub fn fail(&self, kind: &str) {
        let span = self.cx.span();
        span.set_attribute(KeyValue::new("error.type", kind.to_string()));
        span.set_status(Status::error(kind.to_string()));
    }
}

/// One upstream attempt's span; ends when dropped.
pub struct AttemptTrace {
    span: opentelemetry_sdk::trace::Span,
    traceparent: HeaderValue,
}

impl std::fmt::Debug for AttemptTrace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AttemptTrace")
            .field("traceparent", &self.traceparent)
            .finish_non_exhaustive()
    }
}

impl AttemptTrace {
    /// The `traceparent` the upstream request carries: this attempt's span.
    pub fn traceparent(&self) -> &HeaderValue {
        &self.traceparent
    }

    /// The status the upstream answered.
    pub fn respond(&mut self, status: u16) {
        self.span.set_attribute(KeyValue::new(
            "http.response.status_code",
            i64::from(status),
        ));
        if status >= 500 {
            self.span
                .set_attribute(KeyValue::new("error.type", status.to_string()));
            self.span.set_status(Status::error(""));
        }
    }

    /// The attempt failed without an answer (`kind`: connect, timeout, …).
    pub fn fail(&mut self, kind: &str) {
        self.span
            .set_attribute(KeyValue::new("error.type", kind.to_string()));
        self.span.set_status(Status::error(kind.to_string()));
    }
}

/// An attribute value from a count (OTLP integers are signed).
fn saturate(count: u64) -> i64 {
    i64::try_from(count).unwrap_or(i64::MAX)
}

/// `host:port` (or `[v6]:port`) into its parts; a name without a port keeps it whole.
fn split_address(address: &str) -> (&str, Option<u16>) {
    if let Ok(socket) = address.parse::<std::net::SocketAddr>() {
        let host = address
            .rsplit_once(':')
            .map(|(host, _)| host.trim_start_matches('[').trim_end_matches(']'))
            .unwrap_or(address);
        return (host, Some(socket.port()));
    }
    match address.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => match port.parse() {
            Ok(port) => (host, Some(port)),
            Err(_) => (address, None),
        },
        _ => (address, None),
    }
}

#[cfg(test)]
mod tests {
    use super::split_address;

    #[test]
    fn addresses_split_into_host_and_port() {
        assert_eq!(split_address("127.0.0.1:8000"), ("127.0.0.1", Some(8000)));
        assert_eq!(split_address("[::1]:443"), ("::1", Some(443)));
        assert_eq!(
            split_address("vllm-0.internal:8000"),
            ("vllm-0.internal", Some(8000))
        );
        assert_eq!(split_address("vllm-0.internal"), ("vllm-0.internal", None));
        assert_eq!(split_address("::1"), ("::1", None));
    }
}
