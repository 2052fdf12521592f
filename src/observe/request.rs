//! Per-request observation: the request id, the pre-resolved metric handles of the route and of
//! the chosen server, upstream timing, in-flight and WebSocket accounting, and the closing access
//! log line. The proxy hooks each make one call here; nothing on this path formats a label.

use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::Session;
use pingora::Error;
use prometheus::IntGauge;

use super::access::{self, AccessLine};
use super::labels::{status_class_index, NONE};
use super::metrics::{self, PerServerHandles, RouteHandles, ServerHandles};
use super::request_id::{self, REQUEST_ID_HEADER};
use super::servers::{self, InFlight, ServerStats};

/// Handles for one route and each server of its upstream, made when a configuration is compiled.
pub struct RouteObserver {
    route: Arc<str>,
    upstream: Arc<str>,
    handles: Option<RouteHandles>,
    servers: Vec<ServerObserver>,
    /// Requests on this route that never got a server.
    no_server: Option<ServerHandles>,
}

struct ServerObserver {
    address: Arc<str>,
    handles: Option<ServerHandles>,
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

impl ServerObserver {
    fn per_server(&self) -> Option<&PerServerHandles> {
        self.handles.as_ref().and_then(|h| h.server.as_ref())
    }
}

impl RouteObserver {
    /// Resolves the handles of `route` sending to `upstream`, whose servers are `addresses` (the
    /// same `Arc`s the snapshot hands to the hooks, so finding one is a pointer comparison).
    pub fn new<'a>(
        route: &str,
        upstream: &str,
        addresses: impl IntoIterator<Item = &'a Arc<str>>,
    ) -> Self {
        let servers = addresses
            .into_iter()
            .map(|address| ServerObserver {
                address: address.clone(),
                handles: metrics::server_handles(Some(route), Some(upstream), Some(address)),
                stats: servers::stats(upstream, address),
            })
            .collect();
        Self {
            route: Arc::from(route),
            upstream: Arc::from(upstream),
            handles: metrics::route_handles(Some(route)),
            servers,
            no_server: metrics::server_handles(Some(route), Some(upstream), None),
        }
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
/// spent most of its compile time there).
type Observers = std::collections::HashMap<(Arc<str>, Arc<str>), Arc<RouteObserver>>;

static OBSERVERS: LazyLock<parking_lot::Mutex<Observers>> =
    LazyLock::new(|| parking_lot::Mutex::new(Observers::new()));

/// The observer of `route` sending to `upstream` with servers `addresses`: the one compiled
/// before when nothing changed, else a new one.
pub fn observer_for(route: &str, upstream: &str, addresses: &[Arc<str>]) -> Arc<RouteObserver> {
    let mut cache = OBSERVERS.lock();
    let key = (Arc::<str>::from(route), Arc::<str>::from(upstream));
    if let Some(existing) = cache.get(&key) {
        let same = existing.servers.len() == addresses.len()
            && existing
                .servers
                .iter()
                .zip(addresses)
                .all(|(s, a)| *s.address == **a);
        if same {
            return existing.clone();
        }
    }
    let observer = Arc::new(RouteObserver::new(route, upstream, addresses));
    cache.insert(key, observer.clone());
    observer
}

/// Forgets the observers of routes not in `keep` (once per compiled configuration).
pub fn retain_observers(keep: &std::collections::HashSet<&str>) {
    let mut cache = OBSERVERS.lock();
    cache.retain(|(route, _), _| keep.contains(&**route));
}

/// Handles for requests that matched no route.
static UNROUTED: LazyLock<(Option<RouteHandles>, Option<ServerHandles>)> = LazyLock::new(|| {
    (
        metrics::route_handles(None),
        metrics::server_handles(None, None, None),
    )
});

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

/// The observation state of one request (lives in the proxy's request context).
#[derive(Default)]
pub struct RequestObs {
    /// The `X-Request-Id` sent to the backend and the client; empty before [`Self::begin`].
    pub request_id: String,
    route: Option<Arc<RouteObserver>>,
    /// Index into the route's servers.
    server: Option<usize>,
    upstream_started: Option<Instant>,
    upstream_elapsed: Option<Duration>,
    in_flight: Option<(InFlight, Option<GaugeGuard>)>,
    websocket: Option<GaugeGuard>,
}

impl RequestObs {
    /// Takes the client's request id when sane, or makes one and writes it into the request, so
    /// the backend and every response, local ones included, carry the same id.
    pub fn begin(&mut self, request: &mut RequestHeader) {
        let incoming = request.headers.get(REQUEST_ID_HEADER);
        self.request_id = request_id::from_request(incoming);
        let unchanged = incoming.is_some_and(|v| v.as_bytes() == self.request_id.as_bytes());
        if !unchanged {
            if let Err(error) = request.insert_header(REQUEST_ID_HEADER, self.request_id.as_str()) {
                tracing::debug!(%error, "could not set the request id header");
            }
        }
    }

    /// The request goes to `address` of `route`'s upstream (again, on a retry).
    pub fn server_chosen(&mut self, route: &Arc<RouteObserver>, address: &Arc<str>) {
        self.in_flight = None;
        self.route = Some(route.clone());
        self.server = route.server_index(address);
        self.upstream_started = Some(Instant::now());
        if let Some(server) = self.server.and_then(|i| route.servers.get(i)) {
            let gauge = server.per_server().map(|h| GaugeGuard::new(&h.in_flight));
            self.in_flight = Some((server.stats.begin(), gauge));
        }
    }

    fn chosen(&self) -> Option<(&RouteObserver, &ServerObserver)> {
        let route = self.route.as_deref()?;
        Some((route, route.servers.get(self.server?)?))
    }

    /// Connecting to the chosen server failed; `retrying` when another server will be tried.
    pub fn connect_failed(&mut self, error: &Error, retrying: bool) {
        if let Some((route, server)) = self.chosen() {
            server
                .stats
                .connect_failed(error.etype().as_str(), &route.route);
            if let Some(h) = server.per_server() {
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
        if let Some((_, server)) = self.chosen() {
            server.stats.succeeded();
            if let Some(h) = server.per_server() {
                if let Some(elapsed) = self.upstream_elapsed {
                    h.upstream_duration.observe(elapsed.as_secs_f64());
                }
            }
        }
    }

    /// The response to the client: returns the request id, counts an upgrade.
    pub fn respond(&mut self, response: &mut ResponseHeader) -> pingora::Result<()> {
        if !self.request_id.is_empty() {
            response.insert_header(REQUEST_ID_HEADER, self.request_id.as_str())?;
        }
        if response.status.as_u16() == 101 && self.websocket.is_none() {
            let gauge = self.route.as_deref().and_then(|r| r.handles.as_ref());
            self.websocket = gauge.map(|h| GaugeGuard::new(&h.open_websockets));
        }
        Ok(())
    }

    /// The request failed after a server was chosen (timeouts, resets): remembered for the
    /// status page. Connection failures are already recorded by [`Self::connect_failed`].
    pub fn proxy_failed(&mut self, error: &Error) {
        if *error.esource() != pingora::ErrorSource::Upstream || self.in_flight.is_none() {
            return;
        }
        if let Some((route, server)) = self.chosen() {
            server.stats.record(error.etype().as_str(), &route.route);
        }
    }

    /// Counts the request, ends its in-flight and WebSocket accounting, and writes its access line.
    pub fn finish(&mut self, session: &Session, error: Option<&Error>, done: Finish<'_>) {
        let status = session.response_written().map_or(0, |r| r.status.as_u16());
        let elapsed = done.started.elapsed();
        let bytes_in = session.body_bytes_read();
        let bytes_out = session.body_bytes_sent();
        // Gauges first: once a request is counted, it is no longer in flight.
        self.in_flight = None;
        self.websocket = None;
        let (route_handles, server_handles) = match (done.route, self.chosen()) {
            (_, Some((route, server))) => (route.handles.as_ref(), server.handles.as_ref()),
            (Some(route), None) => (route.handles.as_ref(), route.no_server.as_ref()),
            (None, None) => (UNROUTED.0.as_ref(), UNROUTED.1.as_ref()),
        };
        if let Some(h) = server_handles {
            h.requests[status_class_index(status)].inc();
        }
        if let Some(h) = route_handles {
            h.request_duration.observe(elapsed.as_secs_f64());
            h.request_bytes.inc_by(bytes_in as u64);
            h.response_bytes.inc_by(bytes_out as u64);
        }
        let request = session.req_header();
        let route = self.route.as_deref().or(done.route);
        let client = done.client.or_else(|| {
            session
                .client_addr()
                .and_then(|a| a.as_inet())
                .map(|a| a.ip())
        });
        access::log(&AccessLine {
            request_id: if self.request_id.is_empty() {
                "-"
            } else {
                &self.request_id
            },
            listener: done.listener,
            client,
            method: request.method.as_str(),
            path: request.uri.path(),
            status,
            route: route.map_or(NONE, |r| &*r.route),
            upstream: route.map_or(NONE, |r| &*r.upstream),
            server: done.server.unwrap_or(NONE),
            bytes_in,
            bytes_out,
            duration: elapsed,
            upstream_duration: self.upstream_elapsed,
            error: error.map(|e| e.etype().as_str()),
        });
    }
}

/// What the proxy knows at the end of a request.
pub struct Finish<'a> {
    pub listener: &'a str,
    /// The resolved client address (PROXY header or trusted X-Forwarded-For); the peer's when
    /// `None`.
    pub client: Option<std::net::IpAddr>,
    pub started: Instant,
    /// The matched route's observer; `None` when no route matched.
    pub route: Option<&'a RouteObserver>,
    /// The last server chosen, if any.
    pub server: Option<&'a str>,
}
