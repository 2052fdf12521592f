//! Every Prometheus metric ferrogate exports, defined here and nowhere else (README "Metrics" lists
//! them). One process-wide registry of our own (not the prometheus crate's default one).
//!
//! The request path never builds label vectors: [`server_handles`] and [`route_handles`] resolve
//! the children for a (route, upstream, server) once, when a configuration is compiled, and the
//! hooks only touch atomics. Label values come from the configuration (route, upstream, server
//! and listener names) and are capped by [`LabelBudget`]; paths and client addresses never appear.
//!
//! Functions other modules call: [`reload_result`], [`config_generation`], [`certificate_expiry`],
//! [`forget_certificate`], [`acme_result`], [`queue_depth`], [`queue_rejected`], [`security_rejected`], [`proxy_protocol_refused`],
//! [`inference_reading`], [`inference_scrape_failed`], [`inference_servers`], [`render`].

use std::collections::BTreeMap;
use std::sync::LazyLock;
use std::time::Instant;

use parking_lot::Mutex;
use prometheus::{
    Encoder, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use super::clock::unix_secs;
use super::labels::{LabelBudget, DEFAULT_LABEL_BUDGET, NONE, STATUS_CLASSES};
use super::servers::{self, PassiveState};
use crate::inference::signals::Load;

/// Latency buckets (seconds): sub-millisecond proxying up to multi-minute token streams.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    120.0, 300.0,
];

/// The metric families.
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    request_duration: HistogramVec,
    upstream_duration: HistogramVec,
    request_bytes: IntCounterVec,
    response_bytes: IntCounterVec,
    connect_errors: IntCounterVec,
    retries: IntCounterVec,
    in_flight: IntGaugeVec,
    server_up: IntGaugeVec,
    open_connections: IntGaugeVec,
    connections: IntCounterVec,
    open_websockets: IntGaugeVec,
    config_generation: IntGauge,
    reloads: IntCounterVec,
    last_reload: IntGaugeVec,
    cert_not_after: IntGaugeVec,
    cert_expiry: IntGaugeVec,
    acme: IntCounterVec,
    queue_depth: IntGaugeVec,
    server_usable: IntGaugeVec,
    queue_rejections: IntCounterVec,
    security_rejections: IntCounterVec,
    proxy_protocol_refusals: IntCounterVec,
    inference_decisions: IntCounterVec,
    inference_ttft: HistogramVec,
    inference_inter_chunk: HistogramVec,
    inference_predicted_prefix: IntCounterVec,
    inference_rejections: IntCounterVec,
    models: LabelBudget,
    inference_waiting: GaugeVec,
    inference_running: GaugeVec,
    inference_kv_usage: GaugeVec,
    inference_signal_age: GaugeVec,
    inference_scrape_failures: IntCounterVec,
    observed_prefix_hits: IntCounterVec,
    observed_prefix_queries: IntCounterVec,
    cluster_up: IntGauge,
    cluster_members: IntGauge,
    cluster_locks: IntGaugeVec,
    /// (upstream, server) → when its metrics were last read, for the age gauge at scrape time.
    inference_readings: Mutex<BTreeMap<(String, String), Instant>>,
    /// Certificate name → not-after (Unix seconds), for the seconds-left gauge at scrape time.
    certificates: Mutex<BTreeMap<String, i64>>,
    routes: LabelBudget,
    upstreams: LabelBudget,
    servers: LabelBudget,
    names: LabelBudget,
}

static METRICS: LazyLock<Option<Metrics>> = LazyLock::new(|| match Metrics::build() {
    Ok(metrics) => Some(metrics),
    Err(error) => {
        tracing::error!(%error, "metrics are disabled: could not define them");
        None
    }
});

/// The process-wide metrics; `None` only if defining them failed (a bug, logged once).
pub fn metrics() -> Option<&'static Metrics> {
    METRICS.as_ref()
}

fn counter(
    r: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> prometheus::Result<IntCounterVec> {
    let metric = IntCounterVec::new(Opts::new(name, help), labels)?;
    r.register(Box::new(metric.clone()))?;
    Ok(metric)
}

fn gauge(r: &Registry, name: &str, help: &str, labels: &[&str]) -> prometheus::Result<IntGaugeVec> {
    let metric = IntGaugeVec::new(Opts::new(name, help), labels)?;
    r.register(Box::new(metric.clone()))?;
    Ok(metric)
}

fn float_gauge(
    r: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> prometheus::Result<GaugeVec> {
    let metric = GaugeVec::new(Opts::new(name, help), labels)?;
    r.register(Box::new(metric.clone()))?;
    Ok(metric)
}

fn histogram(
    r: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> prometheus::Result<HistogramVec> {
    let opts = HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec());
    let metric = HistogramVec::new(opts, labels)?;
    r.register(Box::new(metric.clone()))?;
    Ok(metric)
}

impl Metrics {
    fn build() -> prometheus::Result<Self> {
        let r = Registry::new();
        let build_info = gauge(
            &r,
            "ferrogate_build_info",
            "Always 1; the version as a label.",
            &["version"],
        )?;
        build_info
            .get_metric_with_label_values(&[env!("CARGO_PKG_VERSION")])?
            .set(1);
        let started = gauge(
            &r,
            "ferrogate_start_time_seconds",
            "When the process started (Unix seconds).",
            &[],
        )?;
        started
            .get_metric_with_label_values::<&str>(&[])?
            .set(unix_secs());
        let config_generation = IntGauge::new(
            "ferrogate_config_generation",
            "Generation of the configuration in force (1 at start, +1 per successful reload).",
        )?;
        r.register(Box::new(config_generation.clone()))?;
        Ok(Self {
            requests: counter(&r, "ferrogate_requests_total",
                "Requests answered, by route, upstream, server and status class (none = no response sent).",
                &["route", "upstream", "server", "class"])?,
            request_duration: histogram(&r, "ferrogate_request_duration_seconds",
                "Time from the request's arrival to the end of its response, by route.", &["route"])?,
            upstream_duration: histogram(&r, "ferrogate_upstream_response_seconds",
                "Time from choosing a server to its response header (connect included).",
                &["upstream", "server"])?,
            request_bytes: counter(&r, "ferrogate_request_body_bytes_total",
                "Request body bytes read from clients, by route.", &["route"])?,
            response_bytes: counter(&r, "ferrogate_response_body_bytes_total",
                "Response body bytes sent to clients, by route.", &["route"])?,
            connect_errors: counter(&r, "ferrogate_upstream_connect_errors_total",
                "Failed connection attempts to a server.", &["upstream", "server"])?,
            retries: counter(&r, "ferrogate_upstream_retries_total",
                "Requests retried on another server after a failed connection.", &["upstream"])?,
            in_flight: gauge(&r, "ferrogate_upstream_in_flight",
                "Requests currently assigned to a server.", &["upstream", "server"])?,
            server_up: gauge(&r, "ferrogate_upstream_server_up",
                "0 while the last connection attempt to the server failed (passive check), else 1.",
                &["upstream", "server"])?,
            open_connections: gauge(&r, "ferrogate_open_connections",
                "Client connections open now, by listener.", &["listener"])?,
            connections: counter(&r, "ferrogate_connections_total",
                "Client connections accepted (after TLS), by listener.", &["listener"])?,
            open_websockets: gauge(&r, "ferrogate_open_websockets",
                "Upgraded (WebSocket) connections open now, by route.", &["route"])?,
            config_generation,
            reloads: counter(&r, "ferrogate_config_reloads_total",
                "Configuration reload attempts by result (ok, error).", &["result"])?,
            last_reload: gauge(&r, "ferrogate_config_last_reload_timestamp_seconds",
                "When the last reload with this result happened (Unix seconds).", &["result"])?,
            cert_not_after: gauge(&r, "ferrogate_certificate_not_after_timestamp_seconds",
                "When a certificate expires (Unix seconds).", &["certificate"])?,
            cert_expiry: gauge(&r, "ferrogate_certificate_expiry_seconds",
                "Seconds until a certificate expires (negative once expired).", &["certificate"])?,
            acme: counter(&r, "ferrogate_acme_orders_total",
                "ACME issuance and renewal attempts by certificate and result (ok, error).",
                &["certificate", "result"])?,
            server_usable: gauge(&r, "ferrogate_upstream_server_healthy",
                "1 while the balancer may send new requests to the server (up, slow-starting or draining with its sticky clients), 0 when it took the server out (failed active checks, passive ejection).",
                &["upstream", "server"])?,
            queue_depth: gauge(&r, "ferrogate_queue_depth",
                "Requests waiting for a server of an upstream.", &["upstream"])?,
            queue_rejections: counter(&r, "ferrogate_queue_rejections_total",
                "Requests refused because an upstream's queue was full.", &["upstream"])?,
            security_rejections: counter(&r, "ferrogate_security_rejections_total",
                "Requests refused at the edge by a route's access lists or rate limit.",
                &["route", "reason"])?,
            proxy_protocol_refusals: counter(&r, "ferrogate_connection_refusals_total",
                "Connections closed before any request: PROXY protocol refused, a listener limit (max_connections, max_connections_per_ip), a failed or stalled TLS handshake.",
                &["reason"])?,
            inference_decisions: counter(&r, "ferrogate_inference_decisions_total",
                "Inference requests routed, by upstream, policy and reason (affinity, affinity_overflow, prefix_hit, least_cost, least_load).",
                &["upstream", "policy", "reason"])?,
            inference_ttft: histogram(&r, "ferrogate_inference_ttft_seconds",
                "Time from sending an inference request to a server to its first response body bytes (time to first token), by upstream, server and model.",
                &["upstream", "server", "model"])?,
            inference_inter_chunk: histogram(&r, "ferrogate_inference_inter_token_seconds",
                "Gaps between streamed response chunks (inter-token latency), by upstream, server and model.",
                &["upstream", "server", "model"])?,
            inference_predicted_prefix: counter(&r, "ferrogate_inference_predicted_prefix_tokens_total",
                "Prompt tokens the cache_aware index predicted the chosen server holds (blocks × about 64 tokens).",
                &["upstream", "server"])?,
            inference_rejections: counter(&r, "ferrogate_inference_rejections_total",
                "Inference requests answered at the edge, by upstream and reason (bad_request, model_not_found, too_large, length_required).",
                &["upstream", "reason"])?,
            models: LabelBudget::new(DEFAULT_LABEL_BUDGET),
            inference_waiting: float_gauge(&r, "ferrogate_inference_requests_waiting",
                "Requests waiting in an inference server's queue, as its /metrics last said.",
                &["upstream", "server"])?,
            inference_running: float_gauge(&r, "ferrogate_inference_requests_running",
                "Requests an inference server was generating, as its /metrics last said.",
                &["upstream", "server"])?,
            inference_kv_usage: float_gauge(&r, "ferrogate_inference_kv_cache_usage_ratio",
                "KV-cache use (0..1) an inference server last reported.",
                &["upstream", "server"])?,
            inference_signal_age: float_gauge(&r, "ferrogate_inference_signal_age_seconds",
                "Seconds since an inference server's /metrics was last read successfully.",
                &["upstream", "server"])?,
            inference_scrape_failures: counter(&r, "ferrogate_inference_scrape_failures_total",
                "Failed reads of an inference server's /v1/models (kind models) or /metrics (kind metrics).",
                &["upstream", "server", "kind"])?,
            observed_prefix_hits: counter(&r, "ferrogate_inference_observed_prefix_hit_tokens_total",
                "Prefix-cache hit tokens inference servers reported (growth between readings).",
                &["upstream", "server"])?,
            observed_prefix_queries: counter(&r, "ferrogate_inference_observed_prefix_query_tokens_total",
                "Prefix-cache query tokens inference servers reported (growth between readings).",
                &["upstream", "server"])?,
            cluster_up: {
                let g = IntGauge::new("ferrogate_cluster_redis_up",
                    "1 while the cluster's Redis answers, 0 while it is away or no cluster is configured.")?;
                r.register(Box::new(g.clone()))?;
                g
            },
            cluster_members: {
                let g = IntGauge::new("ferrogate_cluster_members",
                    "Instances that sent a heartbeat recently, as this instance last read them.")?;
                r.register(Box::new(g.clone()))?;
                g
            },
            cluster_locks: gauge(&r, "ferrogate_cluster_lock_holder",
                "1 for the instance holding a certificate's issuance lock now (by certificate and holder).",
                &["certificate", "holder"])?,
            inference_readings: Mutex::new(BTreeMap::new()),
            registry: r,
            certificates: Mutex::new(BTreeMap::new()),
            routes: LabelBudget::new(DEFAULT_LABEL_BUDGET),
            upstreams: LabelBudget::new(DEFAULT_LABEL_BUDGET),
            servers: LabelBudget::new(DEFAULT_LABEL_BUDGET),
            names: LabelBudget::new(DEFAULT_LABEL_BUDGET),
        })
    }
}

/// Label values for a route (or [`NONE`]), budgeted.
fn route_label(m: &Metrics, route: Option<&str>) -> String {
    route.map_or_else(|| NONE.to_string(), |r| m.routes.admit(r))
}

/// The children a request on one route touches, resolved once per configuration.
#[derive(Clone)]
pub struct RouteHandles {
    pub request_duration: Histogram,
    pub request_bytes: IntCounter,
    pub response_bytes: IntCounter,
    pub open_websockets: IntGauge,
}

/// Handles for `route` (`None` = requests no route matched).
pub fn route_handles(route: Option<&str>) -> Option<RouteHandles> {
    let m = metrics()?;
    let route = route_label(m, route);
    let labels = [route.as_str()];
    Some(RouteHandles {
        request_duration: m
            .request_duration
            .get_metric_with_label_values(&labels)
            .ok()?,
        request_bytes: m.request_bytes.get_metric_with_label_values(&labels).ok()?,
        response_bytes: m
            .response_bytes
            .get_metric_with_label_values(&labels)
            .ok()?,
        open_websockets: m
            .open_websockets
            .get_metric_with_label_values(&labels)
            .ok()?,
    })
}

/// The children a request sent (or meant) to one server of one route touches.
#[derive(Clone)]
pub struct ServerHandles {
    /// By [`super::labels::status_class_index`].
    pub requests: [IntCounter; 6],
    /// Per-server families; `None` for the "no server" entries.
    pub server: Option<PerServerHandles>,
}

/// The children of one (upstream, server).
#[derive(Clone)]
pub struct PerServerHandles {
    pub upstream_duration: Histogram,
    pub connect_errors: IntCounter,
    pub in_flight: IntGauge,
    pub retries: IntCounter,
}

/// Handles for (route, upstream, server); `None` names mean "none" (unrouted, no server).
pub fn server_handles(
    route: Option<&str>,
    upstream: Option<&str>,
    server: Option<&str>,
) -> Option<ServerHandles> {
    let m = metrics()?;
    let route = route_label(m, route);
    let upstream_label = upstream.map_or_else(|| NONE.to_string(), |u| m.upstreams.admit(u));
    let server_label = server.map_or_else(|| NONE.to_string(), |s| m.servers.admit(s));
    let class = |c: &str| {
        let labels = [
            route.as_str(),
            upstream_label.as_str(),
            server_label.as_str(),
            c,
        ];
        m.requests.get_metric_with_label_values(&labels).ok()
    };
    let [c1, c2, c3, c4, c5, c0] = STATUS_CLASSES;
    let requests = [
        class(c1)?,
        class(c2)?,
        class(c3)?,
        class(c4)?,
        class(c5)?,
        class(c0)?,
    ];
    let server = match (upstream, server) {
        (Some(_), Some(_)) => {
            let pair = [upstream_label.as_str(), server_label.as_str()];
            Some(PerServerHandles {
                upstream_duration: m
                    .upstream_duration
                    .get_metric_with_label_values(&pair)
                    .ok()?,
                connect_errors: m.connect_errors.get_metric_with_label_values(&pair).ok()?,
                in_flight: m.in_flight.get_metric_with_label_values(&pair).ok()?,
                retries: m
                    .retries
                    .get_metric_with_label_values(&[upstream_label.as_str()])
                    .ok()?,
            })
        }
        _ => None,
    };
    Some(ServerHandles { requests, server })
}

/// (open connections gauge, accepted connections counter) for a listener.
pub fn listener_handles(listener: &str) -> Option<(IntGauge, IntCounter)> {
    let m = metrics()?;
    let name = m.names.admit(listener);
    let labels = [name.as_str()];
    Some((
        m.open_connections
            .get_metric_with_label_values(&labels)
            .ok()?,
        m.connections.get_metric_with_label_values(&labels).ok()?,
    ))
}

/// Client connections open now, over every listener (for the status page).
pub fn open_connections_total() -> i64 {
    sum_gauges(|m| &m.open_connections)
}

/// WebSockets open now, over every route (for the status page).
pub fn open_websockets_total() -> i64 {
    sum_gauges(|m| &m.open_websockets)
}

fn sum_gauges(family: impl Fn(&Metrics) -> &IntGaugeVec) -> i64 {
    let Some(m) = metrics() else { return 0 };
    prometheus::core::Collector::collect(family(m))
        .iter()
        .flat_map(|f| f.get_metric())
        .map(|metric| metric.get_gauge().get_value() as i64)
        .sum()
}

/// Records a reload attempt's result (called by the reload code).
pub fn reload_result(ok: bool) {
    if let Some(m) = metrics() {
        let result = if ok { "ok" } else { "error" };
        m.reloads.with_label_values(&[result]).inc();
        m.last_reload.with_label_values(&[result]).set(unix_secs());
    }
}

/// Sets the generation of the configuration in force.
pub fn config_generation(generation: u64) {
    if let Some(m) = metrics() {
        m.config_generation
            .set(i64::try_from(generation).unwrap_or(i64::MAX));
    }
}

/// Publishes a certificate's expiry (`not_after` in Unix seconds), from files or ACME.
pub fn certificate_expiry(name: &str, not_after: i64) {
    if let Some(m) = metrics() {
        let name = m.names.admit(name);
        m.cert_not_after
            .with_label_values(&[name.as_str()])
            .set(not_after);
        m.certificates.lock().insert(name, not_after);
    }
}

/// Removes a certificate that is no longer configured.
pub fn forget_certificate(name: &str) {
    if let Some(m) = metrics() {
        let _ = m.cert_not_after.remove_label_values(&[name]);
        let _ = m.cert_expiry.remove_label_values(&[name]);
        m.certificates.lock().remove(name);
    }
}

/// Records an ACME issuance or renewal attempt.
pub fn acme_result(certificate: &str, ok: bool) {
    if let Some(m) = metrics() {
        let name = m.names.admit(certificate);
        let result = if ok { "ok" } else { "error" };
        m.acme.with_label_values(&[name.as_str(), result]).inc();
    }
}

/// Whether the cluster's Redis answers.
pub fn cluster_redis_up(up: bool) {
    if let Some(m) = metrics() {
        m.cluster_up.set(i64::from(up));
    }
}

/// Members and lock holders as the last heartbeat read them.
pub fn cluster_view(view: &crate::cluster::ClusterView) {
    if let Some(m) = metrics() {
        m.cluster_up.set(i64::from(view.redis_up));
        m.cluster_members.set(view.members.len() as i64);
        m.cluster_locks.reset();
        for lock in &view.locks {
            let certificate = m.names.admit(&lock.certificate);
            m.cluster_locks
                .with_label_values(&[certificate.as_str(), lock.holder.as_str()])
                .set(1);
        }
    }
}

/// Sets how many requests wait for a server of `upstream`.
pub fn queue_depth(upstream: &str, depth: i64) {
    if let Some(m) = metrics() {
        let upstream = m.upstreams.admit(upstream);
        m.queue_depth
            .with_label_values(&[upstream.as_str()])
            .set(depth);
    }
}

/// Counts a request the edge checks of `route` refused (`reason`: `access`, `rate_limit`).
pub fn security_rejected(route: &str, reason: &'static str) {
    if let Some(m) = metrics() {
        let route = m.routes.admit(route);
        m.security_rejections
            .with_label_values(&[route.as_str(), reason])
            .inc();
    }
}

/// Counts a connection refused by a listener's PROXY protocol policy (`reason`:
/// `untrusted_peer`, `invalid`, `timeout`).
pub fn proxy_protocol_refused(reason: &'static str) {
    if let Some(m) = metrics() {
        m.proxy_protocol_refusals.with_label_values(&[reason]).inc();
    }
}

/// Counts a connection closed by a listener limit (`reason`: `per_ip` for
/// `max_connections_per_ip`, `max_connections` for the listener's own cap).
pub fn connection_refused(reason: &'static str) {
    let label = match reason {
        "per_ip" => "connections_per_ip",
        other => other,
    };
    if let Some(m) = metrics() {
        m.proxy_protocol_refusals.with_label_values(&[label]).inc();
    }
}

/// Counts a request refused because `upstream`'s queue was full.
/// The balancer's verdict on a server (refreshed when /metrics is scraped).
pub fn server_healthy(upstream: &str, server: &str, healthy: bool) {
    if let Some(m) = metrics() {
        let upstream = m.upstreams.admit(upstream);
        let server = m.servers.admit(server);
        m.server_usable
            .with_label_values(&[upstream.as_str(), server.as_str()])
            .set(i64::from(healthy));
    }
}

pub fn queue_rejected(upstream: &str) {
    if let Some(m) = metrics() {
        let upstream = m.upstreams.admit(upstream);
        m.queue_rejections
            .with_label_values(&[upstream.as_str()])
            .inc();
    }
}

/// Publishes an inference server's metrics reading; `previous` is the reading before it, whose
/// prefix-cache counters the new ones are compared with (a drop, e.g. a restart, adds nothing).
pub fn inference_reading(upstream: &str, server: &str, load: &Load, previous: Option<&Load>) {
    let Some(m) = metrics() else { return };
    let labels = [m.upstreams.admit(upstream), m.servers.admit(server)];
    m.inference_waiting
        .with_label_values(&labels)
        .set(load.waiting);
    m.inference_running
        .with_label_values(&labels)
        .set(load.running);
    match load.kv_usage {
        Some(kv) => m.inference_kv_usage.with_label_values(&labels).set(kv),
        None => drop(m.inference_kv_usage.remove_label_values(&labels)),
    }
    let grown = |now: Option<f64>, before: Option<f64>| counter_growth(before?, now?);
    let previous = previous.copied();
    if let Some(delta) = grown(
        load.prefix_hit_tokens,
        previous.and_then(|p| p.prefix_hit_tokens),
    ) {
        m.observed_prefix_hits
            .with_label_values(&labels)
            .inc_by(delta);
    }
    if let Some(delta) = grown(
        load.prefix_query_tokens,
        previous.and_then(|p| p.prefix_query_tokens),
    ) {
        m.observed_prefix_queries
            .with_label_values(&labels)
            .inc_by(delta);
    }
    m.inference_signal_age.with_label_values(&labels).set(0.0);
    let [upstream, server] = labels;
    m.inference_readings
        .lock()
        .insert((upstream, server), Instant::now());
}

/// How much a cumulative counter grew between two readings; `None` when it went down (the
/// server restarted and counts from zero again) or a value is not a count.
pub fn counter_growth(before: f64, now: f64) -> Option<u64> {
    let delta = now - before;
    (delta.is_finite() && delta >= 0.0 && delta < u64::MAX as f64).then(|| delta.round() as u64)
}

/// Counts a failed scrape of an inference server (`kind`: `models`, `metrics`).
pub fn inference_scrape_failed(upstream: &str, server: &str, kind: &'static str) {
    if let Some(m) = metrics() {
        let labels = [m.upstreams.admit(upstream), m.servers.admit(server)];
        m.inference_scrape_failures
            .with_label_values(&[labels[0].as_str(), labels[1].as_str(), kind])
            .inc();
    }
}

/// Declares the servers `upstream` scrapes now: the readings (gauges) of any other server of it
/// are removed, so a server gone from the pool does not stay on the dashboards.
pub fn inference_servers(upstream: &str, servers: &[&str]) {
    let Some(m) = metrics() else { return };
    let upstream = m.upstreams.admit(upstream);
    let keep: Vec<String> = servers.iter().map(|s| m.servers.admit(s)).collect();
    m.inference_readings.lock().retain(|(u, s), _| {
        if *u != upstream || keep.contains(s) {
            return true;
        }
        let labels = [u.as_str(), s.as_str()];
        for family in [
            &m.inference_waiting,
            &m.inference_running,
            &m.inference_kv_usage,
            &m.inference_signal_age,
        ] {
            let _ = family.remove_label_values(&labels);
        }
        false
    });
}

/// Per-request inference metric children, resolved once per request.
pub struct InferenceHandles {
    pub ttft: Histogram,
    pub inter_chunk: Histogram,
}

/// Counts one routing decision and the prefix tokens it predicted cached.
pub fn inference_decision(upstream: &str, server: &str, policy: &str, reason: &str, tokens: u64) {
    let Some(m) = metrics() else { return };
    let upstream = m.upstreams.admit(upstream);
    if let Ok(c) =
        m.inference_decisions
            .get_metric_with_label_values(&[upstream.as_str(), policy, reason])
    {
        c.inc();
    }
    if tokens > 0 {
        let server = m.servers.admit(server);
        if let Ok(c) = m
            .inference_predicted_prefix
            .get_metric_with_label_values(&[upstream.as_str(), server.as_str()])
        {
            c.inc_by(tokens);
        }
    }
}

/// Counts an inference request answered at the edge.
pub fn inference_rejected(upstream: &str, reason: &'static str) {
    let Some(m) = metrics() else { return };
    let upstream = m.upstreams.admit(upstream);
    if let Ok(c) = m
        .inference_rejections
        .get_metric_with_label_values(&[upstream.as_str(), reason])
    {
        c.inc();
    }
}

/// The TTFT and inter-token histograms of one (upstream, server, model).
pub fn inference_handles(upstream: &str, server: &str, model: &str) -> Option<InferenceHandles> {
    let m = metrics()?;
    let upstream = m.upstreams.admit(upstream);
    let server = m.servers.admit(server);
    let model = m.models.admit(model);
    let labels = [upstream.as_str(), server.as_str(), model.as_str()];
    Some(InferenceHandles {
        ttft: m
            .inference_ttft
            .get_metric_with_label_values(&labels)
            .ok()?,
        inter_chunk: m
            .inference_inter_chunk
            .get_metric_with_label_values(&labels)
            .ok()?,
    })
}

/// The Prometheus text exposition of every metric, with the derived gauges brought up to date.
pub fn render() -> String {
    let Some(m) = metrics() else {
        return String::new();
    };
    let now = unix_secs();
    // The passive server state, as the status page shows it.
    servers::for_each(|upstream, address, stats| {
        let up = stats.state() != PassiveState::Down;
        let labels = [m.upstreams.admit(upstream), m.servers.admit(address)];
        if let Ok(gauge) = m.server_up.get_metric_with_label_values(&labels) {
            gauge.set(i64::from(up));
        }
    });
    for (name, not_after) in m.certificates.lock().iter() {
        m.cert_expiry
            .with_label_values(&[name.as_str()])
            .set(not_after.saturating_sub(now));
    }
    for ((upstream, server), at) in m.inference_readings.lock().iter() {
        m.inference_signal_age
            .with_label_values(&[upstream.as_str(), server.as_str()])
            .set(at.elapsed().as_secs_f64());
    }
    let mut out = Vec::new();
    if let Err(error) = TextEncoder::new().encode(&m.registry.gather(), &mut out) {
        tracing::warn!(%error, "could not encode the metrics");
    }
    String::from_utf8(out).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_is_defined_and_rendered() {
        assert!(metrics().is_some(), "metric definitions must be valid");
        let handles = server_handles(Some("unit-route"), Some("unit-up"), Some("10.9.9.9:1"))
            .expect("handles");
        handles.requests[1].inc();
        let per_server = handles.server.as_ref().expect("per-server handles");
        per_server.upstream_duration.observe(0.02);
        assert!(server_handles(None, None, None)
            .expect("unrouted")
            .server
            .is_none());
        certificate_expiry("unit-cert", unix_secs() + 3600);
        reload_result(true);
        config_generation(3);
        let text = render();
        for needle in [
            "ferrogate_build_info{version=",
            r#"ferrogate_requests_total{class="2xx",route="unit-route",server="10.9.9.9:1",upstream="unit-up"} 1"#,
            r#"ferrogate_upstream_response_seconds_bucket{server="10.9.9.9:1",upstream="unit-up",le="0.025"} 1"#,
            r#"ferrogate_certificate_not_after_timestamp_seconds{certificate="unit-cert"}"#,
            r#"ferrogate_certificate_expiry_seconds{certificate="unit-cert"} 3"#,
            r#"ferrogate_config_reloads_total{result="ok"}"#,
            "ferrogate_config_generation 3",
        ] {
            assert!(text.contains(needle), "missing {needle} in\n{text}");
        }
        forget_certificate("unit-cert");
        assert!(!render().contains("unit-cert"));
    }

    #[test]
    fn inference_readings_and_prefix_growth() {
        let load = |hits, queries| Load {
            waiting: 3.0,
            running: 2.0,
            kv_usage: Some(0.25),
            prefix_hit_tokens: Some(hits),
            prefix_query_tokens: Some(queries),
        };
        let (u, s) = ("unit-gpu", "10.9.9.8:8000");
        inference_reading(u, s, &load(100.0, 400.0), None);
        inference_reading(u, s, &load(150.0, 500.0), Some(&load(100.0, 400.0)));
        // A restart: counters start again from zero, nothing is added.
        inference_reading(u, s, &load(10.0, 20.0), Some(&load(150.0, 500.0)));
        inference_scrape_failed(u, s, "models");
        let text = render();
        for needle in [
            r#"ferrogate_inference_requests_waiting{server="10.9.9.8:8000",upstream="unit-gpu"} 3"#,
            r#"ferrogate_inference_requests_running{server="10.9.9.8:8000",upstream="unit-gpu"} 2"#,
            r#"ferrogate_inference_kv_cache_usage_ratio{server="10.9.9.8:8000",upstream="unit-gpu"} 0.25"#,
            r#"ferrogate_inference_signal_age_seconds{server="10.9.9.8:8000",upstream="unit-gpu"} 0"#,
            r#"ferrogate_inference_observed_prefix_hit_tokens_total{server="10.9.9.8:8000",upstream="unit-gpu"} 50"#,
            r#"ferrogate_inference_observed_prefix_query_tokens_total{server="10.9.9.8:8000",upstream="unit-gpu"} 100"#,
            r#"ferrogate_inference_scrape_failures_total{kind="models",server="10.9.9.8:8000",upstream="unit-gpu"} 1"#,
        ] {
            assert!(text.contains(needle), "missing {needle} in\n{text}");
        }
        inference_servers(u, &[]);
        assert!(!render().contains("ferrogate_inference_requests_waiting{server=\"10.9.9.8:8000\""));
        assert_eq!(counter_growth(5.0, 4.0), None);
        assert_eq!(counter_growth(5.0, f64::NAN), None);
        assert_eq!(counter_growth(5.0, 7.4), Some(2));
    }
}
