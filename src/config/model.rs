//! The validated configuration: the only config types the rest of the daemon sees.
//!
//! Everything here has been checked: names are unique, references resolve, durations are parsed,
//! addresses are resolved and certificate files are loaded. Raw serde types never leave `config/`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rustls::sign::CertifiedKey;

mod balancing;
pub use super::cidr::Cidr;
pub use balancing::*;

/// Default state directory (ACME account, issued and self-signed certificates).
pub const DEFAULT_STATE_DIR: &str = "/var/lib/ferrogate";
/// Default upstream connect timeout.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default upstream read timeout (time allowed between two reads from a silent backend).
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(300);
/// Default idle limit for an upgraded (WebSocket) connection.
pub const DEFAULT_WEBSOCKET_IDLE: Duration = Duration::from_secs(3600);
/// Default time a stopping daemon lets requests in flight finish (`shutdown.grace_period`).
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// Default server weight.
pub const DEFAULT_WEIGHT: u32 = 1;

/// Default admin address when `admin:` is present without `listen`.
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:9901";

/// Name of the built-in plain HTTP listener (`listeners.http`).
pub const LISTENER_HTTP: &str = "http";
/// Name of the built-in TLS listener (`listeners.https`).
pub const LISTENER_HTTPS: &str = "https";

/// The whole validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file this configuration was read from.
    pub source: PathBuf,
    pub state_dir: PathBuf,
    /// Worker threads per listener service.
    pub workers: usize,
    pub listeners: Vec<Listener>,
    pub admin: Option<Admin>,
    pub tls: Tls,
    /// Routes in file order.
    pub routes: Vec<Route>,
    /// Upstreams by name.
    pub upstreams: BTreeMap<String, Upstream>,
    /// How long SIGTERM waits for requests in flight (WebSockets, streams) before closing them.
    pub shutdown_grace: Duration,
    /// Log format and the access log switch.
    pub log: Log,
}

/// A listening socket: `http`, `https` or one of `listeners.extra`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    /// `http`, `https`, or the extra listener's name.
    pub name: String,
    pub address: SocketAddr,
    pub tls: bool,
    /// The built-in port-80 role: answers ACME HTTP-01 and redirects to https what no route claims.
    pub redirect_to_https: bool,
}

/// The admin endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admin {
    pub listen: SocketAddr,
    /// Peers allowed to use the admin endpoints; `None` = anyone who can reach `listen`, which
    /// validation allows only for a loopback address.
    pub allow: Option<Vec<Cidr>>,
}

/// `log`: how the daemon writes its log (restart-only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Log {
    pub format: LogFormat,
    /// One line per request on the `access` target.
    pub access: bool,
}

impl Default for Log {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            access: true,
        }
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Human-readable lines (the default).
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// TLS settings.
#[derive(Debug, Clone, Default)]
pub struct Tls {
    /// `Strict-Transport-Security: max-age=...` on TLS responses when set.
    pub hsts: Option<Duration>,
    /// Certificates in file order; the first one is the default for unknown SNI.
    pub certificates: Vec<Certificate>,
}

/// A certificate loaded from files.
#[derive(Debug, Clone)]
pub struct Certificate {
    pub name: String,
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
    /// DNS names the certificate is valid for (from its subjectAltName, lowercased; `*.x` for
    /// wildcards), used for SNI selection.
    pub dns_names: Vec<String>,
    /// The chain (leaf first) and signing key, ready for rustls.
    pub key: Arc<CertifiedKey>,
    /// Leaf expiry, seconds since the Unix epoch.
    pub not_after: i64,
}

/// How a route matches the Host header.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HostMatch {
    /// A lowercased host name, no port.
    Exact(String),
    /// `*.example.com` stored as `example.com`: matches any name with at least one more label.
    Wildcard(String),
}

/// One routing rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub name: String,
    /// Empty = any host.
    pub hosts: Vec<HostMatch>,
    /// Always starts with `/`; `/` when not given.
    pub path_prefix: String,
    pub strip_prefix: bool,
    /// The listener this route serves; `None` = the https listener (or http when there is none).
    pub listener: Option<String>,
    pub upstream: String,
}

/// A named group of backend servers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    pub name: String,
    pub servers: Vec<Server>,
    pub balance: Balance,
    pub timeouts: Timeouts,
    pub sticky: Option<Sticky>,
    pub health: Health,
    /// Further attempts on other servers after a failed one (`retries`).
    pub retries: u32,
    pub queue: Queue,
    pub discovery: Option<Discovery>,
}

/// One backend server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    /// The address as written (`host:port`), used as its identity in logs and state.
    pub address: String,
    /// The resolved socket address.
    pub socket: SocketAddr,
    pub weight: u32,
    /// Requests this server handles at once; more wait in the upstream's queue.
    pub max_inflight: Option<u32>,
    /// No new sessions; sticky clients already on it stay.
    pub drain: bool,
}

/// Upstream timeouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    pub connect: Duration,
    pub read: Duration,
    pub websocket_idle: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: DEFAULT_CONNECT_TIMEOUT,
            read: DEFAULT_READ_TIMEOUT,
            websocket_idle: DEFAULT_WEBSOCKET_IDLE,
        }
    }
}

impl Config {
    /// The listener with this name.
    pub fn listener(&self, name: &str) -> Option<&Listener> {
        self.listeners.iter().find(|l| l.name == name)
    }
}
