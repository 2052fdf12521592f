//! The serde mirror of the YAML file: the whole user-facing contract of DESIGN.md, every struct
//! `deny_unknown_fields`. Validation decodes these one section or element at a time (so one bad
//! element does not hide the others); nothing outside `config/` sees them.

use std::collections::BTreeMap;

use serde::Deserialize;

mod peer_tls;
mod rules;
pub use peer_tls::*;
pub use rules::*;

/// Top-level keys, in contract order.
pub const TOP_LEVEL_KEYS: &[&str] = &[
    "state_dir",
    "workers",
    "listeners",
    "admin",
    "tls",
    "acme",
    "routes",
    "upstreams",
    "shutdown",
    "log",
    "trusted_proxies",
    "max_connections_per_ip",
    "cluster",
    "geoip",
    "otel",
];

/// Keys of the `tls` section.
pub const TLS_KEYS: &[&str] = &["hsts", "certificates"];

/// `listeners`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawListeners {
    /// `IP:PORT`, or a mapping like [`RawBuiltinListener`] (decoded in validation).
    pub http: Option<serde_yaml::Value>,
    pub https: Option<serde_yaml::Value>,
    #[serde(default)]
    pub extra: Vec<RawExtraListener>,
}

/// `listeners.http` or `listeners.https` written as a mapping.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBuiltinListener {
    pub address: String,
    #[serde(default)]
    pub proxy_protocol: bool,
    pub proxy_protocol_from: Option<Vec<String>>,
    pub max_connections: Option<u32>,
    pub max_headers: Option<u32>,
    pub header_timeout: Option<String>,
    pub idle_timeout: Option<String>,
    /// HTTP/2 receive window per stream: a size (`4MB`) or a byte count.
    pub h2_window: Option<serde_yaml::Value>,
    /// Client certificates (TLS listeners only).
    pub client_auth: Option<RawClientAuth>,
}

/// One of `listeners.extra`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawExtraListener {
    pub name: String,
    pub address: String,
    #[serde(default)]
    pub tls: bool,
    #[serde(default)]
    pub proxy_protocol: bool,
    pub proxy_protocol_from: Option<Vec<String>>,
    pub max_connections: Option<u32>,
    pub max_headers: Option<u32>,
    pub header_timeout: Option<String>,
    pub idle_timeout: Option<String>,
    /// HTTP/2 receive window per stream: a size (`4MB`) or a byte count.
    pub h2_window: Option<serde_yaml::Value>,
    /// Client certificates (TLS listeners only).
    pub client_auth: Option<RawClientAuth>,
}

/// `shutdown`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawShutdown {
    pub grace_period: Option<String>,
}

/// `admin`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    pub listen: Option<String>,
    /// CIDR ranges allowed to connect; required for a non-loopback `listen`.
    pub allow: Option<Vec<String>>,
    pub history: Option<RawHistory>,
}

/// `admin.history`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHistory {
    /// Time between two samples (a duration).
    pub step: Option<String>,
}

/// `log`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    pub format: Option<RawLogFormat>,
    pub access: Option<bool>,
}

/// `otel`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOtel {
    pub endpoint: Option<String>,
    pub service_name: Option<String>,
    pub sample_ratio: Option<f64>,
    pub timeout: Option<String>,
}

/// `log.format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RawLogFormat {
    Text,
    Json,
}

/// One of `tls.certificates`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCertificate {
    pub name: String,
    pub cert: Option<String>,
    pub key: Option<String>,
    pub domains: Option<Vec<String>>,
    pub acme: Option<RawCertificateAcme>,
}

/// `tls.certificates[].acme`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCertificateAcme {
    pub challenge: RawChallenge,
    pub dns_provider: Option<String>,
}

/// ACME challenge type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum RawChallenge {
    #[serde(rename = "http-01")]
    Http01,
    #[serde(rename = "dns-01")]
    Dns01,
}

/// The top-level `acme` section.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAcme {
    /// `letsencrypt`, `letsencrypt-staging` or an https URL.
    pub directory: Option<String>,
    pub email: Option<String>,
    pub ca_root: Option<String>,
    pub eab: Option<RawEab>,
    #[serde(default)]
    pub dns_providers: BTreeMap<String, RawDnsProvider>,
    /// Recursive resolvers (`ip:port`) for CNAME and zone look-ups; default: /etc/resolv.conf.
    pub dns_resolvers: Option<Vec<String>>,
    /// First retry delay after a failed issuance (doubles up to `retry_max`).
    pub retry_min: Option<String>,
    pub retry_max: Option<String>,
}

/// External account binding.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEab {
    pub kid: String,
    pub hmac_key_file: Option<String>,
    pub hmac_key_env: Option<String>,
}

/// A DNS-01 provider: `type` picks which of the other keys apply (checked in validation, so a
/// key of another type gets its own positioned error).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDnsProvider {
    #[serde(rename = "type")]
    pub kind: RawDnsProviderType,
    // rfc2136
    pub server: Option<String>,
    pub zone: Option<String>,
    pub tsig_key_name: Option<String>,
    pub tsig_algorithm: Option<String>,
    pub tsig_secret_file: Option<String>,
    pub tsig_secret_env: Option<String>,
    // regru
    pub username: Option<String>,
    pub password_file: Option<String>,
    pub password_env: Option<String>,
    // cloudflare
    pub api_token_file: Option<String>,
    pub api_token_env: Option<String>,
    /// regru and cloudflare: the API base URL (a stand-in in tests).
    pub api_url: Option<String>,
    // exec
    pub command: Option<String>,
    // webhook
    pub url: Option<String>,
    // every type
    /// Check propagation by asking these servers (`ip:port`) instead of the zone's NS.
    pub nameservers: Option<Vec<String>>,
    pub propagation_timeout: Option<String>,
}

/// DNS provider kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RawDnsProviderType {
    Rfc2136,
    Cloudflare,
    Regru,
    Exec,
    Webhook,
}

/// The keys of a route, in [`RawRoute`] order.
pub const ROUTE_KEYS: &[&str] = &[
    "name",
    "hosts",
    "path_prefix",
    "strip_prefix",
    "listener",
    "upstream",
    "redirect",
    "respond",
    "match",
    "rewrite",
    "headers",
    "deny_user_agents",
    "countries",
    "rate_limit",
    "allow",
    "deny",
    "api_keys",
    "max_body",
    "cors",
    "basic_auth",
    "security_headers",
];

/// One of `routes`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    pub name: String,
    #[serde(default)]
    pub hosts: Vec<String>,
    pub path_prefix: Option<String>,
    #[serde(default)]
    pub strip_prefix: bool,
    pub listener: Option<String>,
    /// Exactly one of `upstream`, `redirect` and `respond` (checked in validation).
    pub upstream: Option<String>,
    pub redirect: Option<RawRedirect>,
    pub respond: Option<RawRespond>,
    /// Conditions on the request besides host and path; a route whose `match` fails is skipped.
    #[serde(rename = "match")]
    pub matcher: Option<RawMatch>,
    pub rewrite: Option<RawRewrite>,
    pub headers: Option<RawRouteHeaders>,
    /// Regexes; a matching User-Agent gets 403.
    pub deny_user_agents: Option<Vec<String>>,
    pub countries: Option<RawCountries>,
    pub rate_limit: Option<RawRateLimit>,
    pub allow: Option<Vec<String>>,
    pub deny: Option<Vec<String>>,
    pub api_keys: Option<RawApiKeys>,
    /// `10MB`, `512KB`, `1GB` or a number of bytes.
    pub max_body: Option<serde_yaml::Value>,
    pub cors: Option<RawCors>,
    pub basic_auth: Option<RawBasicAuth>,
    /// Adds X-Content-Type-Options, X-Frame-Options and Referrer-Policy unless the backend did.
    pub security_headers: Option<bool>,
}

/// `routes[].basic_auth`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBasicAuth {
    pub realm: Option<String>,
    /// htpasswd-style `user:bcrypt-hash` lines.
    pub users_file: String,
    /// Send the client's Authorization header on to the backend (default true).
    pub forward_authorization: Option<bool>,
}

/// `routes[].cors`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCors {
    pub origins: Vec<String>,
    pub methods: Option<Vec<String>>,
    pub headers: Option<Vec<String>>,
    #[serde(default)]
    pub credentials: bool,
    pub max_age: Option<String>,
}

/// `routes[].api_keys`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawApiKeys {
    /// One hex SHA-256 digest of a key per line; `#` comments.
    pub file: String,
    pub header: Option<String>,
    pub upstream_key_file: Option<String>,
    pub quota: Option<RawQuota>,
}

/// `routes[].api_keys.quota`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawQuota {
    /// `usage.total_tokens` a key may spend per window.
    pub tokens: u64,
    /// The window: `1h`, `1d`, ...
    pub per: String,
}

/// `routes[].rate_limit`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRateLimit {
    /// `client_ip` or `header:NAME`.
    pub key: Option<String>,
    /// `N/s`, `N/m` or `N/h`.
    pub rate: String,
    pub burst: Option<u32>,
}

/// One of `upstreams`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstream {
    pub servers: Option<Vec<RawServer>>,
    pub balance: Option<RawBalance>,
    pub sticky: Option<RawSticky>,
    pub health: Option<RawHealth>,
    pub timeouts: Option<RawTimeouts>,
    pub discovery: Option<RawDiscovery>,
    pub inference: Option<RawInference>,
    pub retries: Option<u32>,
    pub queue: Option<RawQueue>,
    /// `client_ip`, `header:NAME` or `cookie:NAME` for `balance: hash`.
    pub hash_key: Option<String>,
    /// Present: https to every server.
    pub tls: Option<RawUpstreamTls>,
}

/// `upstreams.NAME.queue`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawQueue {
    pub size: u32,
    pub timeout: Option<String>,
}

/// One of `upstreams.NAME.servers`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    pub address: String,
    pub weight: Option<u32>,
    pub max_inflight: Option<u32>,
    pub drain: Option<bool>,
    /// Models this server serves (inference upstreams).
    pub models: Option<Vec<String>>,
    /// What this inference server publishes beyond its HTTP API.
    pub inference: Option<RawServerInference>,
}

/// `upstreams.NAME.servers[].inference`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServerInference {
    /// `tcp://HOST:PORT` of the engine's KV-cache event publisher (vLLM `--kv-events-config`).
    pub kv_events: Option<String>,
    /// `tcp://HOST:PORT` of its replay socket.
    pub kv_events_replay: Option<String>,
}

/// `upstreams.NAME.balance`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RawBalance {
    RoundRobin,
    LeastInflight,
    P2c,
    Hash,
    Metrics,
    CacheAware,
}

/// `upstreams.NAME.sticky`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSticky {
    pub mode: RawStickyMode,
    pub cookie: Option<String>,
    pub ttl: Option<String>,
    pub header: Option<String>,
}

/// How a client is pinned to a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RawStickyMode {
    Cookie,
    ClientIp,
    Header,
}

/// `upstreams.NAME.health`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHealth {
    pub path: Option<String>,
    pub interval: Option<String>,
    pub timeout: Option<String>,
    pub rise: Option<u32>,
    pub fall: Option<u32>,
    pub expect_status: Option<u16>,
    pub passive_fails: Option<u32>,
    pub eject: Option<String>,
    pub slow_start: Option<String>,
}

/// `upstreams.NAME.timeouts`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTimeouts {
    pub connect: Option<String>,
    pub read: Option<String>,
    pub websocket_idle: Option<String>,
}

/// `upstreams.NAME.discovery`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDiscovery {
    /// `name:port` to re-resolve.
    pub dns: String,
    pub refresh: Option<String>,
    /// `IP:PORT` of the nameserver to ask instead of the system's.
    pub nameserver: Option<String>,
}

/// `upstreams.NAME.inference`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawInference {
    /// vllm, sglang, ray, llamacpp, ollama, openai…
    pub engine: String,
    pub models: Option<RawModels>,
    pub refresh: Option<String>,
    /// A size: bytes as a number, or text such as `16MB`.
    pub max_body: Option<serde_yaml::Value>,
    pub affinity: Option<bool>,
    pub signal_max_age: Option<String>,
    pub prefill_tokens_per_sec: Option<u64>,
    pub cache_tokens: Option<u64>,
    /// `PYTHONHASHSEED` of the engines' block hashes (KV events).
    pub kv_hash_seed: Option<String>,
}

/// `inference.models`: `discover` or an explicit list.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawModels {
    Keyword(String),
    List(Vec<String>),
}

/// The top-level `cluster` section.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCluster {
    pub name: Option<String>,
    pub redis: RawRedis,
    pub lock_ttl: Option<String>,
    pub sync_interval: Option<String>,
    pub timeout: Option<String>,
}

/// `cluster.redis`: exactly one of `url`, `nodes` (Redis Cluster) or `sentinel`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRedis {
    pub url: Option<String>,
    pub nodes: Option<Vec<String>>,
    pub sentinel: Option<RawSentinel>,
    pub tls: Option<RawRedisTls>,
    pub password_file: Option<String>,
    pub password_env: Option<String>,
    pub key_prefix: Option<String>,
}

/// `cluster.redis.sentinel`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSentinel {
    pub master: String,
    pub nodes: Vec<String>,
}

/// `cluster.redis.tls`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRedisTls {
    pub ca: Option<String>,
}
