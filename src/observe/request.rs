//! Per-request observation: the request id, the pre-resolved metric handles of the route and of
//! the chosen server, upstream timing, in-flight and WebSocket accounting, and the closing access
//! log line. The request path makes one call here per step; nothing on this path formats a
//! label.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use http::HeaderValue;
use parking_lot::Mutex;
use pingora::http::RequestHeader;
use prometheus::IntGauge;

use super::access::{self, AccessLine};
use super::labels::{status_class_index, NONE};
use super::request_id;
use super::servers::{InFlight, ServerStats};
use super::traffic::{PerServerHandles, RouteHandles, ServerHandles, TrafficMetrics};

/// Handles for one route and each server of its upstream. Built when a configuration is
/// prepared; its metric children are resolved when that configuration commits
/// ([`Self::activate`]), or on first use, so preparing a configuration adds no series.
pub struct RouteObserver {
    route: Arc<str>,
    upstream: Arc<str>,
    traffic: Arc<TrafficMetrics>,
    handles: OnceLock<Option<RouteHandles>>,
    servers: Vec<ServerObserver>,
    /// Requests on this route that never got a server.
    no_server: OnceLock<Option<ServerHandles>>,
}

struct ServerObserver {
    address: Arc<str>,
    handles: OnceLock<Option<ServerHandles>>,
    stats: Arc<ServerStats>,
}

impl std::fmt::Debug for RouteObserver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouteObserver")
            .field("route", &self.route)
            .field("upstream", &self.upstream)
            .field("servers", &self.servers.len())
            .finish()
    }
}

impl RouteObserver {
    /// The observer of `route` sending to `upstream`, whose servers are `servers` (addresses
    /// the same `Arc`s the snapshot hands to the request path, so finding one is a pointer comparison;
    /// each with its stats).
    pub fn new<'a>(
        traffic: &Arc<TrafficMetrics>,
        route: &str,
        upstream: &str,
        servers: impl IntoIterator<Item = (&'a Arc<str>, &'a Arc<ServerStats>)>,
    ) -> Self {
        let servers = servers
            .into_iter()
            .map(|(address, stats)| ServerObserver {
                address: address.clone(),
                handles: OnceLock::new(),
                stats: stats.clone(),
            })
            .collect();
        Self {
            route: Arc::from(route),
            upstream: Arc::from(upstream),
            traffic: traffic.clone(),
            handles: OnceLock::new(),
            servers,
            no_server: OnceLock::new(),
        }
    }

    /// The route's name.
    pub fn route(&self) -> &Arc<str> {
        &self.route
    }

    /// The upstream's name.
    pub fn upstream(&self) -> &Arc<str> {
        &self.upstream
    }

    /// Whether this observer watches exactly `addresses`, in order.
    pub fn watches(&self, addresses: &[Arc<str>]) -> bool {
        self.servers.len() == addresses.len()
            && self
                .servers
                .iter()
                .zip(addresses)
                .all(|(s, a)| *s.address == **a)
    }

    /// Resolves every metric child now (a configuration commits).
    pub fn activate(&self) {
        self.handles();
        self.no_server();
        for server in &self.servers {
            self.server_handles(server);
        }
    }

    /// Each server's address and stats.
    pub fn server_stats(&self) -> impl Iterator<Item = (&Arc<str>, &Arc<ServerStats>)> {
        self.servers.iter().map(|s| (&s.address, &s.stats))
    }

    fn handles(&self) -> Option<&RouteHandles> {
        self.handles
            .get_or_init(|| self.traffic.route_handles(Some(&self.route)))
            .as_ref()
    }

    fn no_server(&self) -> Option<&ServerHandles> {
        self.no_server
            .get_or_init(|| {
                self.traffic
                    .server_handles(Some(&self.route), Some(&self.upstream), None)
            })
            .as_ref()
    }

    fn server_handles<'a>(&self, server: &'a ServerObserver) -> Option<&'a ServerHandles> {
        server
            .handles
            .get_or_init(|| {
                self.traffic.server_handles(
                    Some(&self.route),
                    Some(&self.upstream),
                    Some(&server.address),
                )
            })
            .as_ref()
    }

    fn per_server<'a>(&self, server: &'a ServerObserver) -> Option<&'a PerServerHandles> {
        self.server_handles(server).and_then(|h| h.server.as_ref())
    }

    fn server_index(&self, address: &Arc<str>) -> Option<usize> {
        self.servers
            .iter()
            .position(|s| Arc::ptr_eq(&s.address, address))
            .or_else(|| self.servers.iter().position(|s| s.address == *address))
    }
}

/// Observers by (route, upstream), kept across reloads: a route whose upstream and servers did not
/// change gets its handles back instead of resolving every label set again (a 10k-route reload
/// spent most of its compile time there). Looked up while a configuration is prepared, filled
/// when it commits, pruned when it retires.
#[derive(Debug, Default)]
pub struct RouteObservers {
    map: Mutex<HashMap<RouteKey, Arc<RouteObserver>>>,
}

/// (route, upstream).
type RouteKey = (Arc<str>, Arc<str>);

impl RouteObservers {
    /// The observer kept for `route` sending to `upstream`, when it watches `addresses`.
    pub fn find(
        &self,
        route: &str,
        upstream: &str,
        addresses: &[Arc<str>],
    ) -> Option<Arc<RouteObserver>> {
        let key = (Arc::<str>::from(route), Arc::<str>::from(upstream));
        self.map
            .lock()
            .get(&key)
            .filter(|o| o.watches(addresses))
            .cloned()
    }

    /// Keeps `observer` for its (route, upstream).
    pub fn adopt(&self, observer: &Arc<RouteObserver>) {
        let key = (observer.route.clone(), observer.upstream.clone());
        self.map.lock().insert(key, observer.clone());
    }

    /// Forgets the observers of routes for which `keep` is false.
    pub fn retain(&self, mut keep: impl FnMut(&str) -> bool) {
        self.map.lock().retain(|(route, _), _| keep(route));
    }

    /// How many observers are kept.
    pub fn len(&self) -> usize {
        self.map.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Handles for requests that matched no route.
pub struct Unrouted {
    route: Option<RouteHandles>,
    server: Option<ServerHandles>,
}

impl std::fmt::Debug for Unrouted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Unrouted").finish_non_exhaustive()
    }
}

impl Unrouted {
    pub fn new(traffic: &TrafficMetrics) -> Self {
        Self {
            route: traffic.route_handles(None),
            server: traffic.server_handles(None, None, None),
        }
    }
}

/// Decrements a gauge when dropped.
struct GaugeGuard(IntGauge);

impl GaugeGuard {
    fn new(gauge: &IntGauge) -> Self {
        gauge.inc();
        Self(gauge.clone())
    }
}

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// The observation state of one request (lives in the request path's state).
#[derive(Default)]
pub struct RequestObs {
    /// The `X-Request-Id` sent to the backend and the client; `None` before [`Self::begin`].
    pub request_id: Option<HeaderValue>,
    route: Option<Arc<RouteObserver>>,
    /// Index into the route's servers.
    server: Option<usize>,
    upstream_started: Option<Instant>,
    upstream_elapsed: Option<Duration>,
    in_flight: Option<(InFlight, Option<GaugeGuard>)>,
    websocket: Option<GaugeGuard>,
}

impl RequestObs {
    /// Takes the client's request id when sane, or makes one; the backend and every response,
    /// local ones included, carry it.
    pub fn begin(&mut self, request: &RequestHeader) {
        self.request_id = Some(request_id::from_request(
            request.headers.get(&request_id::REQUEST_ID),
        ));
    }

    /// The request goes to `address` of `route`'s upstream (again, on a retry).
    pub fn server_chosen(&mut self, route: &Arc<RouteObserver>, address: &Arc<str>) {
        self.in_flight = None;
        self.route = Some(route.clone());
        self.server = route.server_index(address);
        self.upstream_started = Some(Instant::now());
        if let Some(server) = self.server.and_then(|i| route.servers.get(i)) {
            let gauge = route
                .per_server(server)
                .map(|h| GaugeGuard::new(&h.in_flight));
            self.in_flight = Some((server.stats.begin(), gauge));
        }
    }

    fn chosen(&self) -> Option<(&RouteObserver, &ServerObserver)> {
        let route = self.route.as_deref()?;
        Some((route, route.servers.get(self.server?)?))
    }

    /// Connecting to the chosen server failed (`kind`, e.g. `ConnectRefused`); `retrying` when
    /// another server will be tried.
    pub fn connect_failed(&mut self, kind: &str, retrying: bool) {
        if let Some((route, server)) = self.chosen() {
            server.stats.connect_failed(kind, &route.route);
            if let Some(h) = route.per_server(server) {
                h.connect_errors.inc();
                if retrying {
                    h.retries.inc();
                }
            }
        }
        self.in_flight = None;
    }

    /// The chosen server's response header arrived.
    pub fn upstream_responded(&mut self) {
        self.upstream_elapsed = self.upstream_started.map(|t| t.elapsed());
        if let Some((route, server)) = self.chosen() {
            server.stats.succeeded();
            if let Some(h) = route.per_server(server) {
                if let Some(elapsed) = self.upstream_elapsed {
                    h.upstream_duration.observe(elapsed.as_secs_f64());
                }
            }
        }
    }

    /// The response to the client has this status: a 101 counts an open WebSocket.
    pub fn respond(&mut self, status: u16) {
        if status == 101 && self.websocket.is_none() {
            let gauge = self.route.as_deref().and_then(|r| r.handles());
            self.websocket = gauge.map(|h| GaugeGuard::new(&h.open_websockets));
        }
    }

    /// The request failed at its server after the server was chosen (timeouts, resets, `kind`
    /// e.g. `ReadTimedout`): remembered for the status page. Connection failures are already
    /// recorded by [`Self::connect_failed`].
    pub fn proxy_failed(&mut self, kind: &str) {
        if self.in_flight.is_none() {
            return;
        }
        if let Some((route, server)) = self.chosen() {
            server.stats.record(kind, &route.route);
        }
    }

    /// Counts the request, ends its in-flight and WebSocket accounting, and writes its access line.
    pub fn finish(&mut self, done: Finish<'_>) {
        let status = done.status;
        let elapsed = done.started.elapsed();
        let (bytes_in, bytes_out) = (done.bytes_in, done.bytes_out);
        // Gauges first: once a request is counted, it is no longer in flight.
        self.in_flight = None;
        self.websocket = None;
        let (route_handles, server_handles) = match (done.route, self.chosen()) {
            (_, Some((route, server))) => (route.handles(), route.server_handles(server)),
            (Some(route), None) => (route.handles(), route.no_server()),
            (None, None) => (done.unrouted.route.as_ref(), done.unrouted.server.as_ref()),
        };
        if let Some(h) = server_handles {
            h.requests[status_class_index(status)].inc();
        }
        if let Some(h) = route_handles {
            h.request_duration.observe(elapsed.as_secs_f64());
            h.request_bytes.inc_by(bytes_in as u64);
            h.response_bytes.inc_by(bytes_out as u64);
        }
        let route = self.route.as_deref().or(done.route);
        access::log(&AccessLine {
            request_id: self
                .request_id
                .as_ref()
                .and_then(|id| id.to_str().ok())
                .unwrap_or("-"),
            listener: done.listener,
            client: done.client,
            method: done.method,
            path: done.path,
            status,
            route: route.map_or(NONE, |r| &*r.route),
            upstream: route.map_or(NONE, |r| &*r.upstream),
            server: done.server.unwrap_or(NONE),
            bytes_in,
            bytes_out,
            duration: elapsed,
            upstream_duration: self.upstream_elapsed,
            error: done.error,
        });
    }
}

/// What the request path knows at the end of a request.
pub struct Finish<'a> {
    pub listener: &'a str,
    /// The resolved client address (PROXY header or trusted X-Forwarded-For), else the peer's.
    pub client: Option<std::net::IpAddr>,
    pub method: &'a str,
    /// The path only: queries may carry secrets.
    pub path: &'a str,
    /// The status sent; 0 when none was (the client went away first).
    pub status: u16,
    /// Request body bytes read from the client.
    pub bytes_in: usize,
    /// Response body bytes sent to the client.
    pub bytes_out: usize,
    /// Why the exchange failed, if it did (a short kind name).
    pub error: Option<&'static str>,
    pub started: Instant,
    /// The matched route's observer; `None` when no route matched.
    pub route: Option<&'a RouteObserver>,
    /// The last server chosen, if any.
    pub server: Option<&'a str>,
    /// Where requests no route matched are counted.
    pub unrouted: &'a Unrouted,
}
