//! Validated per-route edge security settings: rate limits and client address access lists.

use std::time::Duration;

use super::Cidr;

/// What a route's rate limit counts requests by.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RateKey {
    /// The client address (the peer, or the one a trusted proxy or PROXY header names).
    ClientIp,
    /// A request header's value (lower-case name); requests without it share one bucket.
    Header(String),
    /// The client's API key (the route must have `api_keys`).
    ApiKey,
}

/// `routes[].rate_limit`: a token bucket per key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimit {
    pub key: RateKey,
    /// `count` requests per `period` is the sustained rate (`10/s`, `600/m`, `100/h`).
    pub count: u32,
    pub period: Duration,
    /// Bucket size: the most requests a key may make at once.
    pub burst: u32,
}

/// A route's access control and limits (all optional).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RouteSecurity {
    pub rate_limit: Option<RateLimit>,
    /// Client ranges allowed in; empty = everyone (subject to `deny`).
    pub allow: Vec<Cidr>,
    /// Client ranges refused; checked before `allow`.
    pub deny: Vec<Cidr>,
    pub api_keys: Option<ApiKeys>,
    pub cors: Option<Cors>,
    /// Largest request body accepted (`max_body`), in bytes; larger ones get 413.
    pub max_body: Option<u64>,
    pub basic_auth: Option<BasicAuth>,
    /// `security_headers: true`: nosniff, SAMEORIGIN framing and a referrer policy on responses
    /// whose backend set none of its own.
    pub security_headers: bool,
}

/// `routes[].basic_auth`: users allowed in with a password (HTTP Basic).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BasicAuth {
    /// Shown by the browser's login prompt.
    pub realm: String,
    /// (user, bcrypt hash) from `users_file`, in file order.
    pub users: Vec<(String, String)>,
    /// Whether the backend receives the client's Authorization header.
    pub forward_authorization: bool,
}

impl RateLimit {
    /// Tokens added per second.
    pub fn per_second(&self) -> f64 {
        f64::from(self.count) / self.period.as_secs_f64().max(f64::MIN_POSITIVE)
    }
}

impl RouteSecurity {
    /// Whether the route asks for any check at all (the hot path skips the rest when not).
    pub fn is_empty(&self) -> bool {
        self.rate_limit.is_none()
            && self.allow.is_empty()
            && self.deny.is_empty()
            && self.api_keys.is_none()
            && self.max_body.is_none()
            && self.cors.is_none()
            && self.basic_auth.is_none()
            && !self.security_headers
    }
}

/// `routes[].api_keys`: who may use the route, by key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeys {
    /// SHA-256 digests of the accepted keys (the file holds only digests).
    pub digests: Vec<[u8; 32]>,
    /// Where the client sends its key: `authorization` (as `Bearer KEY`) or another header.
    pub header: String,
    /// The key sent upstream instead of the client's (`upstream_key_file`); `None` = the client's
    /// key header is removed.
    pub upstream_key: Option<String>,
    /// Tokens each key may spend per window (`quota`).
    pub quota: Option<TokenQuota>,
}

/// `routes[].api_keys.quota`: OpenAI `usage.total_tokens` per key per window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenQuota {
    pub tokens: u64,
    pub per: Duration,
}

/// `routes[].cors`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cors {
    /// Allowed origins (`https://app.example`) or `*`.
    pub origins: Vec<String>,
    /// Allowed methods, upper case.
    pub methods: Vec<String>,
    /// Allowed request headers (lower case) or `*`.
    pub headers: Vec<String>,
    pub credentials: bool,
    /// How long a browser may cache a preflight answer.
    pub max_age: Duration,
}
