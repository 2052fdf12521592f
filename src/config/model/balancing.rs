//! The validated balancing settings of an upstream: policy, stickiness, health, queue and DNS
//! discovery, with their defaults.

use std::net::SocketAddr;
use std::time::Duration;

/// Default further attempts after a failed connect (`retries`).
pub const DEFAULT_RETRIES: u32 = 2;
/// Most retries an upstream may ask for.
pub const MAX_RETRIES: u32 = 10;
/// Default sticky ttl (Kubernetes' ClientIP affinity default).
pub const DEFAULT_STICKY_TTL: Duration = Duration::from_secs(3 * 3600);
/// Default sticky cookie name.
pub const DEFAULT_STICKY_COOKIE: &str = "fg_srv";
/// Default active health check path.
pub const DEFAULT_HEALTH_PATH: &str = "/";
/// Default active health check interval.
pub const DEFAULT_HEALTH_INTERVAL: Duration = Duration::from_secs(5);
/// Default active health check timeout.
pub const DEFAULT_HEALTH_TIMEOUT: Duration = Duration::from_secs(2);
/// Default successes that bring a server back.
pub const DEFAULT_HEALTH_RISE: u32 = 2;
/// Default failures that take a server out.
pub const DEFAULT_HEALTH_FALL: u32 = 3;
/// Default consecutive connect errors / 5xx that eject a server (0 disables).
pub const DEFAULT_PASSIVE_FAILS: u32 = 3;
/// Default first ejection time (doubles on each repeated ejection).
pub const DEFAULT_EJECT: Duration = Duration::from_secs(10);
/// Default queue wait when `queue` has no `timeout`.
pub const DEFAULT_QUEUE_TIMEOUT: Duration = Duration::from_secs(5);
/// Default DNS discovery refresh.
pub const DEFAULT_DISCOVERY_REFRESH: Duration = Duration::from_secs(10);

/// Load-balancing policy.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Balance {
    /// Smooth weighted round robin.
    #[default]
    RoundRobin,
    /// Fewest outstanding requests per unit of weight.
    LeastInflight,
    /// Power of two random choices by in-flight requests.
    P2c,
    /// Weighted rendezvous hashing of a request key.
    Hash(HashKey),
    /// Inference upstreams: scraped queue depth and KV-cache use blended with in-flight counts.
    Metrics,
    /// Inference upstreams: predicted queue wait plus uncached prompt prefix, with bounded load.
    CacheAware,
}

impl Balance {
    pub fn name(&self) -> &'static str {
        match self {
            Self::RoundRobin => "round_robin",
            Self::LeastInflight => "least_inflight",
            Self::P2c => "p2c",
            Self::Hash(_) => "hash",
            Self::Metrics => "metrics",
            Self::CacheAware => "cache_aware",
        }
    }
}

/// What `balance: hash` hashes (`hash_key`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum HashKey {
    #[default]
    ClientIp,
    /// A request header (lowercased name); the client IP when absent.
    Header(String),
    /// A request cookie; the client IP when absent.
    Cookie(String),
}

/// `sticky`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sticky {
    pub mode: StickyMode,
    /// Cookie Max-Age, or how long a table entry lives after its last use.
    pub ttl: Duration,
}

/// How a client is pinned to a server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StickyMode {
    /// The proxy inserts a cookie naming the server by an opaque id.
    Cookie { name: String },
    /// A table of client addresses.
    ClientIp,
    /// A table keyed by this request header's value (lowercased name).
    Header { name: String },
}

/// `health`: active checks (when any of `path`, `interval`, `timeout`, `rise`, `fall`,
/// `expect_status` is given) and passive ejection (always, unless `passive_fails: 0`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    pub active: Option<ActiveHealth>,
    pub passive_fails: u32,
    pub eject: Duration,
    pub slow_start: Option<Duration>,
}

impl Default for Health {
    fn default() -> Self {
        Self {
            active: None,
            passive_fails: DEFAULT_PASSIVE_FAILS,
            eject: DEFAULT_EJECT,
            slow_start: None,
        }
    }
}

/// Active HTTP health checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveHealth {
    pub path: String,
    pub interval: Duration,
    pub timeout: Duration,
    pub rise: u32,
    pub fall: u32,
    /// The status that means healthy; any 2xx or 3xx when `None`.
    pub expect_status: Option<u16>,
}

/// `queue`: requests that find every server at `max_inflight` wait here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Queue {
    /// Requests that may wait at once; 0 = answer 503 at once.
    pub size: u32,
    pub timeout: Duration,
}

impl Default for Queue {
    fn default() -> Self {
        Self {
            size: 0,
            timeout: DEFAULT_QUEUE_TIMEOUT,
        }
    }
}

/// `discovery`: servers from a DNS name's A/AAAA records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discovery {
    pub name: String,
    pub port: u16,
    pub refresh: Duration,
    /// A nameserver to ask instead of the system's (`/etc/resolv.conf`).
    pub nameserver: Option<SocketAddr>,
}
