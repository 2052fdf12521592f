//! OpenTelemetry traces (`otel:`): the export pipeline of one configuration ([`Pipeline`]: an
//! OTLP/HTTP protobuf exporter behind the SDK's batch processor, which runs on a thread of its
//! own with a bounded queue, so a slow or unreachable collector costs the request path nothing
//! but dropped spans), the W3C trace context a request continues or starts ([`context`]), and
//! the spans of one request and its upstream attempts ([`request`]).

pub mod context;
pub mod request;

use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracer, SdkTracerProvider,
};
use opentelemetry_sdk::Resource;

use crate::config::model::Otel;

pub use request::{AttemptTrace, RequestTrace};

/// Spans waiting for export; more are dropped (the collector is away or slow).
const QUEUE_SPANS: usize = 4096;
/// Spans per export request.
const BATCH_SPANS: usize = 512;
/// Longest a finished span waits before its batch is sent.
const BATCH_DELAY: Duration = Duration::from_millis(500);
/// The instrumentation scope the spans carry.
const SCOPE: &str = "ferrogate";

/// Why the export pipeline could not be built.
#[derive(Debug, thiserror::Error)]
#[error("otel: cannot export to {endpoint}: {reason}")]
pub struct OtelError {
    endpoint: String,
    reason: String,
}

/// The export pipeline of one `otel:` section. Dropping the last handle shuts it down on a
/// thread of its own (flushing what is queued), never on the thread that dropped it.
pub struct Pipeline {
    settings: Otel,
    provider: SdkTracerProvider,
    tracer: SdkTracer,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("endpoint", &self.settings.endpoint)
            .finish_non_exhaustive()
    }
}

impl Pipeline {
    /// Builds the exporter and its batch thread for `settings`; sends nothing yet.
    pub fn new(settings: &Otel) -> Result<Self, OtelError> {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(settings.endpoint.clone())
            .with_timeout(settings.timeout)
            .build()
            .map_err(|e| OtelError {
                endpoint: settings.endpoint.clone(),
                reason: e.to_string(),
            })?;
        let batch = BatchConfigBuilder::default()
            .with_max_queue_size(QUEUE_SPANS)
            .with_max_export_batch_size(BATCH_SPANS)
            .with_scheduled_delay(BATCH_DELAY)
            .build();
        let processor = BatchSpanProcessor::builder(exporter)
            .with_batch_config(batch)
            .build();
        let resource = Resource::builder_empty()
            .with_service_name(settings.service_name.clone())
            .build();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(processor)
            .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
                settings.sample_ratio,
            ))))
            .with_resource(resource)
            .build();
        let tracer = provider.tracer(SCOPE);
        Ok(Self {
            settings: settings.clone(),
            provider,
            tracer,
        })
    }

    /// The settings it was built from: a reload with the same keeps this pipeline.
    pub fn settings(&self) -> &Otel {
        &self.settings
    }

    /// Sends every finished span now (tests, shutdown); blocks until the export returns.
    pub fn flush(&self) {
        let _ = self.provider.force_flush();
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        let provider = self.provider.clone();
        let spawned = std::thread::Builder::new()
            .name("otel-shutdown".into())
            .spawn(move || {
                if let Err(e) = provider.shutdown() {
                    tracing::debug!("otel: shutting the exporter down: {e}");
                }
            });
        if let Err(e) = spawned {
            tracing::warn!("otel: cannot start the exporter's shutdown: {e}");
        }
    }
}
