//! Observability, knowing no domain: the process's metrics registry ([`metrics`]) that every
//! domain registers its own families in, the request path's families ([`traffic`]), the access
//! log and log format ([`access`], [`logging`]), request ids ([`request_id`]), per-server counters
//! that survive reloads ([`servers`]), per-route observers ([`request`]), the status board
//! other modules fill ([`board`]) and the recent history of rates and latencies the status
//! page charts ([`history`]). [`Observability`] owns the long-lived parts; the admin
//! listener serves all of it; the request path feeds it through [`request::RequestObs`].

pub mod access;
pub mod board;
pub mod clock;
pub mod connections;
pub mod history;
pub mod labels;
pub mod logging;
pub mod metrics;
pub mod request;
pub mod request_id;
pub mod servers;
pub mod traffic;

use std::sync::Arc;

pub use board::StatusBoard;
pub use history::History;
pub use metrics::Metrics;
pub use request::{Finish, RequestObs, RouteObserver, RouteObservers, Unrouted};
pub use servers::ServerStatsRegistry;
pub use traffic::TrafficMetrics;

/// The long-lived observation state of the process.
#[derive(Debug)]
pub struct Observability {
    pub metrics: Arc<Metrics>,
    pub traffic: Arc<TrafficMetrics>,
    pub servers: Arc<ServerStatsRegistry>,
    pub observers: RouteObservers,
    pub board: Arc<StatusBoard>,
    pub unrouted: Unrouted,
    /// The last window of samples the status page charts.
    pub history: Arc<History>,
}

impl Observability {
    /// A fresh registry with the request path's families defined in it.
    pub fn new() -> prometheus::Result<Self> {
        let metrics = Arc::new(Metrics::new()?);
        let servers = Arc::new(ServerStatsRegistry::default());
        let traffic = TrafficMetrics::register(&metrics, servers.clone())?;
        Ok(Self {
            unrouted: Unrouted::new(&traffic),
            metrics,
            traffic,
            servers,
            observers: RouteObservers::default(),
            board: Arc::new(StatusBoard::default()),
            history: Arc::new(History::default()),
        })
    }
}
