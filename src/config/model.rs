//! The validated configuration: the only config types the rest of the daemon sees.
//!
//! Everything here has been checked: names are unique, references resolve, durations are parsed,
//! addresses are resolved and certificate files are loaded. Raw serde types never leave `config/`,
//! nor do the drafts that validation hands to resolution. Plain data: no I/O.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rustls::sign::CertifiedKey;

mod balancing;
mod cluster;
mod inference;
mod peer_tls;
mod rules;
mod security;
pub use super::cidr::Cidr;
pub use balancing::*;
pub use cluster::*;
pub use inference::*;
pub use peer_tls::*;
pub use rules::*;
pub use security::*;

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
/// Default step of the status page's history (`admin.history.step`): 180 steps make 15 minutes.
pub const DEFAULT_HISTORY_STEP: Duration = Duration::from_secs(5);
/// Shortest `admin.history.step` (a 18 s window).
pub const MIN_HISTORY_STEP: Duration = Duration::from_millis(100);
/// Longest `admin.history.step` (a 3 h window).
pub const MAX_HISTORY_STEP: Duration = Duration::from_secs(60);

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
    /// The `acme` section; defaults (Let's Encrypt) when absent.
    pub acme: Acme,
    /// Routes in file order.
    pub routes: Vec<Route>,
    /// Upstreams by name.
    pub upstreams: BTreeMap<String, Upstream>,
    /// How long SIGTERM waits for requests in flight (WebSockets, streams) before closing them.
    pub shutdown_grace: Duration,
    /// Log format and the access log switch.
    pub log: Log,
    /// Peers whose X-Forwarded-For is believed (`trusted_proxies`); empty = nobody's.
    pub trusted_proxies: Vec<Cidr>,
    /// Concurrent connections per client address on each proxy listener; `None` = unlimited.
    pub max_connections_per_ip: Option<u32>,
    /// Shared state with other instances through Redis; `None` = this instance alone.
    pub cluster: Option<Cluster>,
    /// The country database, when a route uses `countries`.
    pub geoip: Option<Geoip>,
    /// Traces exported over OTLP/HTTP; `None` = no traces.
    pub otel: Option<Otel>,
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
    /// `proxy_protocol: true`: every connection must start with a PROXY v1/v2 header, and only
    /// peers in these ranges (`proxy_protocol_from`) may send one. `None` = no PROXY protocol.
    pub proxy_protocol: Option<Vec<Cidr>>,
    /// Connection and request-head limits against slow or greedy clients.
    pub limits: ListenerLimits,
    /// Client certificates (TLS listeners only).
    pub client_auth: Option<ClientAuth>,
}

/// Default most request header fields (`max_headers`); more get 431.
pub const DEFAULT_MAX_HEADERS: u32 = 100;
/// The most `max_headers` may be: the HTTP/1 parser's own fixed limit.
pub const MAX_HEADERS_LIMIT: u32 = 256;
/// Default time a new connection has to send its first complete request head (`header_timeout`).
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Default time an idle keep-alive connection is kept open for its next request (`idle_timeout`).
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Default HTTP/2 receive window per stream (`h2_window`): the protocol's own 64 KiB holds an
/// upload to 64 KiB per round trip (1.3 MB/s over a 50 ms path); 1 MiB is Go's (Caddy's) size.
pub const DEFAULT_H2_WINDOW: u32 = 1 << 20;
/// Smallest `h2_window`: the protocol's default.
pub const MIN_H2_WINDOW: u32 = 65_535;
/// Largest `h2_window`: the connection's window is twice it and must stay below 2^31.
pub const MAX_H2_WINDOW: u32 = 1 << 29;

/// A listener's limits (`max_connections`, `max_headers`, `header_timeout`, `idle_timeout`,
/// `h2_window`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenerLimits {
    /// Connections served at once; more are closed right after accept. `None` = unlimited.
    pub max_connections: Option<u32>,
    /// Request header fields allowed; more get 431.
    pub max_headers: u32,
    /// From accept until the first request head is complete.
    pub header_timeout: Duration,
    /// Between two requests on a keep-alive connection.
    pub idle_timeout: Duration,
    /// HTTP/2 receive window per stream; a connection's is twice it.
    pub h2_window: u32,
}

impl Default for ListenerLimits {
    fn default() -> Self {
        Self {
            max_connections: None,
            max_headers: DEFAULT_MAX_HEADERS,
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            h2_window: DEFAULT_H2_WINDOW,
        }
    }
}

/// The admin endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admin {
    pub listen: SocketAddr,
    /// Peers allowed to use the admin endpoints; `None` = anyone who can reach `listen`, which
    /// validation allows only for a loopback address.
    pub allow: Option<Vec<Cidr>>,
    /// `admin.history.step`: how often the status page's history takes a sample.
    pub history_step: Duration,
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

/// Default `otel.service_name`.
pub const DEFAULT_OTEL_SERVICE_NAME: &str = "ferrogate";
/// Default `otel.timeout`: how long one export may take before its batch is dropped.
pub const DEFAULT_OTEL_TIMEOUT: Duration = Duration::from_secs(10);
/// The path an `otel.endpoint` without one gets: OTLP/HTTP's traces path.
pub const OTLP_TRACES_PATH: &str = "/v1/traces";

/// `otel`: OpenTelemetry traces, exported over OTLP/HTTP (protobuf).
#[derive(Debug, Clone, PartialEq)]
pub struct Otel {
    /// The collector's traces URL (`http://127.0.0.1:4318/v1/traces`).
    pub endpoint: String,
    /// `service.name` of every span.
    pub service_name: String,
    /// Share of traces started here that are recorded (0.0 to 1.0); a request whose
    /// `traceparent` says sampled (or not) follows its caller.
    pub sample_ratio: f64,
    /// How long one export may take.
    pub timeout: Duration,
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
    /// File certificates in file order; the first certificate of the file (file or ACME) is the
    /// default for unknown SNI.
    pub certificates: Vec<Certificate>,
    /// Certificates issued by ACME, in file order.
    pub acme: Vec<AcmeCertificate>,
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

/// A certificate the ACME manager issues and renews.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcmeCertificate {
    /// Also the directory name under `state_dir/certs/`.
    pub name: String,
    /// Position in `tls.certificates` (0 = the default certificate).
    pub index: usize,
    /// Lowercased DNS names, `*.x` for wildcards, in file order.
    pub domains: Vec<String>,
    pub challenge: Challenge,
}

/// How the CA checks control of the names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    Http01,
    /// By the named entry of `acme.dns_providers`.
    Dns01 {
        provider: String,
    },
}

/// Let's Encrypt's production directory.
pub const LETSENCRYPT_DIRECTORY: &str = "https://acme-v02.api.letsencrypt.org/directory";
/// Let's Encrypt's staging directory.
pub const LETSENCRYPT_STAGING_DIRECTORY: &str =
    "https://acme-staging-v02.api.letsencrypt.org/directory";
/// First retry delay after a failed issuance.
pub const DEFAULT_ACME_RETRY_MIN: Duration = Duration::from_secs(60);
/// Longest retry delay after repeated failures.
pub const DEFAULT_ACME_RETRY_MAX: Duration = Duration::from_secs(6 * 3600);
/// How long DNS-01 waits for TXT records to appear on the authoritative servers.
pub const DEFAULT_PROPAGATION_TIMEOUT: Duration = Duration::from_secs(120);

/// The `acme` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acme {
    /// The directory URL.
    pub directory: String,
    pub email: Option<String>,
    /// A PEM root to trust for the directory's TLS instead of the system roots.
    pub ca_root: Option<PathBuf>,
    pub eab: Option<Eab>,
    pub dns_providers: BTreeMap<String, DnsProvider>,
    /// Recursive resolvers for CNAME and zone look-ups; empty = /etc/resolv.conf.
    pub dns_resolvers: Vec<SocketAddr>,
    pub retry_min: Duration,
    pub retry_max: Duration,
}

impl Default for Acme {
    fn default() -> Self {
        Self {
            directory: LETSENCRYPT_DIRECTORY.into(),
            email: None,
            ca_root: None,
            eab: None,
            dns_providers: BTreeMap::new(),
            dns_resolvers: Vec::new(),
            retry_min: DEFAULT_ACME_RETRY_MIN,
            retry_max: DEFAULT_ACME_RETRY_MAX,
        }
    }
}

/// External account binding (ZeroSSL and others).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Eab {
    pub kid: String,
    /// The base64url HMAC key.
    pub hmac_key: Secret,
}

/// Where a secret is read from when it is needed (never stored in the model, never logged); read
/// by `Secret::read`, which lives with the configuration's other file reads in `config::resolve`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Secret {
    File(PathBuf),
    Env(String),
}

/// A DNS-01 provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsProvider {
    pub name: String,
    pub kind: DnsProviderKind,
    /// Servers to check propagation on; empty = the zone's authoritative servers.
    pub nameservers: Vec<SocketAddr>,
    pub propagation_timeout: Duration,
}

/// TSIG algorithms for RFC 2136 updates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TsigAlgorithm {
    HmacSha256,
    HmacSha384,
    HmacSha512,
}

/// What a DNS-01 provider talks to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DnsProviderKind {
    /// Dynamic DNS UPDATE (RFC 2136) signed with TSIG.
    Rfc2136 {
        server: SocketAddr,
        /// The zone to update; found by SOA query when absent.
        zone: Option<String>,
        tsig_key_name: String,
        tsig_algorithm: TsigAlgorithm,
        /// The base64 TSIG secret.
        tsig_secret: Secret,
    },
    Cloudflare {
        api_token: Secret,
        api_url: String,
    },
    Regru {
        username: String,
        password: Secret,
        api_url: String,
        /// The domain as registered at reg.ru; found by SOA when absent.
        zone: Option<String>,
    },
    /// `COMMAND present|cleanup FQDN VALUE`.
    Exec {
        command: PathBuf,
    },
    /// `POST {url}/present` and `{url}/cleanup` with `{"fqdn","value"}`.
    Webhook {
        url: String,
    },
}

/// Cloudflare's API base.
pub const CLOUDFLARE_API_URL: &str = "https://api.cloudflare.com/client/v4";
/// reg.ru's API base.
pub const REGRU_API_URL: &str = "https://api.reg.ru/api/regru2";

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
    /// `strip_prefix: true`; `rules.rewrite` is then `Prefix("/")`.
    pub strip_prefix: bool,
    /// The listener this route serves; `None` = the https listener (or http when there is none).
    pub listener: Option<String>,
    /// Forward, redirect or answer.
    pub action: RouteAction,
    /// Rate limit and access lists.
    pub security: RouteSecurity,
    /// `match`, refusals, rewrite and header rules.
    pub rules: RouteRules,
}

impl Route {
    /// The upstream the route forwards to; `None` for a route that answers itself.
    pub fn upstream(&self) -> Option<&str> {
        match &self.action {
            RouteAction::Upstream(name) => Some(name),
            _ => None,
        }
    }
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
    /// OpenAI-aware routing (`inference:`): model routing, node signals, body inspection.
    pub inference: Option<Inference>,
    /// https to the servers (`tls:`); `None` = plain HTTP.
    pub tls: Option<UpstreamTls>,
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
    /// Models this server serves (inference upstreams), overriding the upstream's list.
    pub models: Option<Vec<String>>,
    /// Where the server publishes its KV-cache events (inference upstreams).
    pub kv_events: Option<KvEvents>,
}

impl Server {
    /// A server at `socket` (its address written as the socket) with `weight` and no other
    /// setting.
    pub fn new(socket: SocketAddr, weight: u32) -> Self {
        Self {
            address: socket.to_string(),
            socket,
            weight,
            max_inflight: None,
            drain: false,
            models: None,
            kv_events: None,
        }
    }
}

/// `servers[].inference.kv_events` (and `kv_events_replay`): ZMQ endpoints of an engine's
/// KV-cache event publisher.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KvEvents {
    /// `tcp://HOST:PORT` of the PUB socket.
    pub endpoint: String,
    /// `tcp://HOST:PORT` of the replay ROUTER socket.
    pub replay: Option<String>,
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
