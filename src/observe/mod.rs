//! Observability: Prometheus metrics (every definition in [`metrics`]), the access log and log
//! format ([`access`], [`logging`]), request ids ([`request_id`]), per-server counters that survive
//! reloads ([`servers`]), and the status board other modules fill ([`board`]). The admin listener
//! serves all of it; the proxy hooks feed it through [`request::RequestObs`].
//!
//! For the reload code: after a reload attempt call [`board::reload_finished`], and after a
//! successful one [`board::config_loaded`] with the new generation (start-up calls it with 1).
//! Certificate sources call [`board::publish_certificate`]; ACME also calls
//! [`metrics::acme_result`].

pub mod access;
pub mod board;
pub mod clock;
pub mod connections;
pub mod labels;
pub mod logging;
pub mod metrics;
pub mod request;
pub mod request_id;
pub mod servers;

pub use request::{Finish, RequestObs, RouteObserver};
