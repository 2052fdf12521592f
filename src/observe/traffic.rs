//! The request path's own families (requests, latencies, bytes, connections, WebSockets, server
//! connect errors and in-flight counts) and the label children one route, server or listener
//! touches, resolved once so the request path only touches atomics. Label values come from the
//! configuration (route, upstream, server and listener names) and are capped by the label
//! budgets; paths and client addresses never appear.

use std::sync::Arc;

use prometheus::{Histogram, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec};

use super::labels::{NONE, STATUS_CLASSES};
use super::metrics::{sum_gauges, Labels, Metrics, Refresh};
use super::servers::{PassiveState, ServerStatsRegistry};

/// The request path's families.
pub struct TrafficMetrics {
    labels: Arc<Labels>,
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
}

impl std::fmt::Debug for TrafficMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrafficMetrics").finish_non_exhaustive()
    }
}

/// The children a request on one route touches.
#[derive(Clone)]
pub struct RouteHandles {
    pub request_duration: Histogram,
    pub request_bytes: IntCounter,
    pub response_bytes: IntCounter,
    pub open_websockets: IntGauge,
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

impl TrafficMetrics {
    /// Defines the families in `metrics`; the passive server state (`ferrogate_upstream_server_up`)
    /// is copied from `servers` at every scrape.
    pub fn register(
        metrics: &Metrics,
        servers: Arc<ServerStatsRegistry>,
    ) -> prometheus::Result<Arc<Self>> {
        let m = metrics;
        let traffic = Arc::new(Self {
            labels: m.labels().clone(),
            requests: m.counter("ferrogate_requests_total",
                "Requests answered, by route, upstream, server and status class (none = no response sent).",
                &["route", "upstream", "server", "class"])?,
            request_duration: m.histogram("ferrogate_request_duration_seconds",
                "Time from the request's arrival to the end of its response, by route.", &["route"])?,
            upstream_duration: m.histogram("ferrogate_upstream_response_seconds",
                "Time from choosing a server to its response header (connect included).",
                &["upstream", "server"])?,
            request_bytes: m.counter("ferrogate_request_body_bytes_total",
                "Request body bytes read from clients, by route.", &["route"])?,
            response_bytes: m.counter("ferrogate_response_body_bytes_total",
                "Response body bytes sent to clients, by route.", &["route"])?,
            connect_errors: m.counter("ferrogate_upstream_connect_errors_total",
                "Failed connection attempts to a server.", &["upstream", "server"])?,
            retries: m.counter("ferrogate_upstream_retries_total",
                "Requests retried on another server after a failed connection.", &["upstream"])?,
            in_flight: m.gauge("ferrogate_upstream_in_flight",
                "Requests currently assigned to a server.", &["upstream", "server"])?,
            server_up: m.gauge("ferrogate_upstream_server_up",
                "0 while the last connection attempt to the server failed (passive check), else 1.",
                &["upstream", "server"])?,
            open_connections: m.gauge("ferrogate_open_connections",
                "Client connections open now, by listener.", &["listener"])?,
            connections: m.counter("ferrogate_connections_total",
                "Client connections accepted (after TLS), by listener.", &["listener"])?,
            open_websockets: m.gauge("ferrogate_open_websockets",
                "Upgraded (WebSocket) connections open now, by route.", &["route"])?,
        });
        m.on_render(Arc::new(PassiveStates {
            traffic: traffic.clone(),
            servers,
        }));
        Ok(traffic)
    }

    fn route_label(&self, route: Option<&str>) -> String {
        route.map_or_else(|| NONE.to_string(), |r| self.labels.routes.admit(r))
    }

    /// Handles for `route` (`None` = requests no route matched).
    pub fn route_handles(&self, route: Option<&str>) -> Option<RouteHandles> {
        let route = self.route_label(route);
        let labels = [route.as_str()];
        Some(RouteHandles {
            request_duration: self
                .request_duration
                .get_metric_with_label_values(&labels)
                .ok()?,
            request_bytes: self
                .request_bytes
                .get_metric_with_label_values(&labels)
                .ok()?,
            response_bytes: self
                .response_bytes
                .get_metric_with_label_values(&labels)
                .ok()?,
            open_websockets: self
                .open_websockets
                .get_metric_with_label_values(&labels)
                .ok()?,
        })
    }

    /// Handles for (route, upstream, server); `None` names mean "none" (unrouted, no server).
    pub fn server_handles(
        &self,
        route: Option<&str>,
        upstream: Option<&str>,
        server: Option<&str>,
    ) -> Option<ServerHandles> {
        let route = self.route_label(route);
        let upstream_label =
            upstream.map_or_else(|| NONE.to_string(), |u| self.labels.upstreams.admit(u));
        let server_label =
            server.map_or_else(|| NONE.to_string(), |s| self.labels.servers.admit(s));
        let class = |c: &str| {
            let labels = [
                route.as_str(),
                upstream_label.as_str(),
                server_label.as_str(),
                c,
            ];
            self.requests.get_metric_with_label_values(&labels).ok()
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
                    upstream_duration: self
                        .upstream_duration
                        .get_metric_with_label_values(&pair)
                        .ok()?,
                    connect_errors: self
                        .connect_errors
                        .get_metric_with_label_values(&pair)
                        .ok()?,
                    in_flight: self.in_flight.get_metric_with_label_values(&pair).ok()?,
                    retries: self
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
    pub fn listener_handles(&self, listener: &str) -> Option<(IntGauge, IntCounter)> {
        let name = self.labels.names.admit(listener);
        let labels = [name.as_str()];
        Some((
            self.open_connections
                .get_metric_with_label_values(&labels)
                .ok()?,
            self.connections
                .get_metric_with_label_values(&labels)
                .ok()?,
        ))
    }

    /// Client connections open now, over every listener (for the status page).
    pub fn open_connections_total(&self) -> i64 {
        sum_gauges(&self.open_connections)
    }

    /// WebSockets open now, over every route (for the status page).
    pub fn open_websockets_total(&self) -> i64 {
        sum_gauges(&self.open_websockets)
    }
}

/// Copies each server's passive state into `ferrogate_upstream_server_up` at scrape time.
struct PassiveStates {
    traffic: Arc<TrafficMetrics>,
    servers: Arc<ServerStatsRegistry>,
}

impl Refresh for PassiveStates {
    fn refresh(&self) {
        let t = &self.traffic;
        self.servers.for_each(|upstream, address, stats| {
            let up = stats.state() != PassiveState::Down;
            let labels = [
                t.labels.upstreams.admit(upstream),
                t.labels.servers.admit(address),
            ];
            if let Ok(gauge) = t.server_up.get_metric_with_label_values(&labels) {
                gauge.set(i64::from(up));
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_count_under_their_labels() {
        let metrics = Metrics::new().expect("definitions");
        let servers = Arc::new(ServerStatsRegistry::default());
        let traffic = TrafficMetrics::register(&metrics, servers.clone()).expect("register");
        let handles = traffic
            .server_handles(Some("unit-route"), Some("unit-up"), Some("10.9.9.9:1"))
            .expect("handles");
        handles.requests[1].inc();
        let per_server = handles.server.as_ref().expect("per-server handles");
        per_server.upstream_duration.observe(0.02);
        assert!(traffic
            .server_handles(None, None, None)
            .expect("unrouted")
            .server
            .is_none());
        servers
            .stats("unit-up", "10.9.9.9:1")
            .connect_failed("ConnectRefused", "r");
        let text = metrics.render();
        for needle in [
            r#"ferrogate_requests_total{class="2xx",route="unit-route",server="10.9.9.9:1",upstream="unit-up"} 1"#,
            r#"ferrogate_upstream_response_seconds_bucket{server="10.9.9.9:1",upstream="unit-up",le="0.025"} 1"#,
            r#"ferrogate_upstream_server_up{server="10.9.9.9:1",upstream="unit-up"} 0"#,
        ] {
            assert!(text.contains(needle), "missing {needle} in\n{text}");
        }
    }
}
