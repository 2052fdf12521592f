//! Edge security for a route: client address access lists and rate limits, checked in the request
//! filter before anything is proxied. [`RouteGuard`] is compiled into the snapshot; the token
//! buckets and quota counts behind it are long-lived state kept by route name in
//! [`tables::RouteTables`], so a reload that leaves a route's rate limit unchanged keeps every
//! client's bucket.

pub mod access;
pub mod basic_auth;
pub mod bucket;
pub mod client;
pub mod connections;
pub mod cors;
pub mod gate;
pub mod head_deadline;
pub mod headers;
pub mod listener;
pub mod metrics;
pub mod proxy_header;
pub mod proxy_protocol;
pub mod quota;
pub mod refuse;
pub mod tables;

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use http::HeaderMap;

use crate::cluster::Cluster;
use crate::config::model::{ApiKeys, Cidr, Cors, RateKey, RateLimit, RouteSecurity};
use bucket::BucketTable;
use metrics::SecurityMetrics;
use tables::RouteTables;

/// Why a request was refused at the edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The client address is denied or not allowed (403).
    Forbidden,
    /// No API key, or one that is not in the route's key file (401).
    Unauthorized,
    /// The request body is larger than the route's `max_body` (413).
    TooLarge,
    /// The rate limit's bucket is empty (429); seconds until the next token.
    RateLimited { retry_after: u64 },
    /// The API key spent its token quota for the window (429, `insufficient_quota`); seconds
    /// until the window ends.
    QuotaExceeded { retry_after: u64 },
    /// No or wrong Basic credentials on a route with `basic_auth` (401 with a Basic challenge).
    BasicAuth,
}

impl Refusal {
    /// The metric label for this refusal.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Forbidden => "access",
            Self::Unauthorized => "api_key",
            Self::TooLarge => "body_size",
            Self::RateLimited { .. } => "rate_limit",
            Self::BasicAuth => "basic_auth",
            Self::QuotaExceeded { .. } => "quota",
        }
    }
}

/// What compiling a route's guard draws on.
#[derive(Clone, Copy)]
pub struct GuardContext<'a> {
    /// The long-lived rate-limit and quota tables (looked up, never changed, while compiling).
    pub tables: &'a RouteTables,
    /// The cluster in force, whose shared counts the checks use.
    pub cluster: Option<&'a Arc<Cluster>>,
    /// Where refusals are counted.
    pub metrics: Option<&'a Arc<SecurityMetrics>>,
}

/// One route's compiled checks.
#[derive(Debug)]
pub struct RouteGuard {
    route: Arc<str>,
    cluster: Option<Arc<Cluster>>,
    metrics: Option<Arc<SecurityMetrics>>,
    allow: Vec<Cidr>,
    deny: Vec<Cidr>,
    rate: Option<RateCheck>,
    keys: Option<KeyCheck>,
    max_body: Option<u64>,
    cors: Option<Cors>,
    basic: Option<basic_auth::BasicAuthCheck>,
    security_headers: bool,
}

/// A route's rate limit: the local buckets, and what names its shared buckets in a cluster.
#[derive(Debug)]
struct RateCheck {
    key: RateKey,
    settings: RateLimit,
    table: Arc<BucketTable>,
    route: Arc<str>,
    /// The limit's settings, in the shared buckets' names (a changed limit starts afresh).
    tag: String,
}

/// The header Basic credentials travel in (removed upstream when not forwarded).
static AUTHORIZATION: http::HeaderName = http::header::AUTHORIZATION;

/// A route's API keys, compiled.
#[derive(Debug)]
struct KeyCheck {
    /// SHA-256 digests of the accepted keys.
    digests: HashSet<[u8; 32]>,
    header: http::HeaderName,
    upstream_key: Option<http::HeaderValue>,
    quota: Option<Arc<quota::QuotaTable>>,
}

impl KeyCheck {
    fn compile(route: &str, keys: &ApiKeys, tables: &RouteTables) -> Option<Self> {
        Some(Self {
            digests: keys.digests.iter().copied().collect(),
            header: http::HeaderName::from_bytes(keys.header.as_bytes()).ok()?,
            upstream_key: match &keys.upstream_key {
                Some(key) => Some(http::HeaderValue::from_str(&format!("Bearer {key}")).ok()?),
                None => None,
            },
            quota: keys.quota.as_ref().map(|q| tables.quota_table(route, q)),
        })
    }

    /// The SHA-256 of the presented key when it is one of ours.
    fn verify(&self, headers: &HeaderMap) -> Option<[u8; 32]> {
        let raw = headers.get(&self.header)?.as_bytes();
        let key = if self.header == http::header::AUTHORIZATION {
            let (scheme, rest) = raw.split_at_checked(7)?;
            if !scheme.eq_ignore_ascii_case(b"bearer ") {
                return None;
            }
            rest
        } else {
            raw
        };
        let digest = sha256(key.trim_ascii());
        self.digests.contains(&digest).then_some(digest)
    }
}

/// SHA-256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

impl RouteGuard {
    /// The guard for `route`'s settings; `None` when it asks for no checks.
    pub fn compile(
        route: &str,
        security: &RouteSecurity,
        context: GuardContext<'_>,
    ) -> Option<Arc<Self>> {
        if security.is_empty() {
            return None;
        }
        Some(Arc::new(Self {
            route: Arc::from(route),
            cluster: context.cluster.cloned(),
            metrics: context.metrics.cloned(),
            allow: security.allow.clone(),
            deny: security.deny.clone(),
            rate: security.rate_limit.as_ref().map(|limit| RateCheck {
                key: limit.key.clone(),
                settings: limit.clone(),
                table: context.tables.rate_table(route, limit),
                route: Arc::from(route),
                tag: format!(
                    "{}/{}ms/{}",
                    limit.count,
                    limit.period.as_millis(),
                    limit.burst
                ),
            }),
            keys: security
                .api_keys
                .as_ref()
                .and_then(|k| KeyCheck::compile(route, k, context.tables)),
            max_body: security.max_body,
            cors: security.cors.clone(),
            basic: security
                .basic_auth
                .as_ref()
                .and_then(basic_auth::BasicAuthCheck::compile),
            security_headers: security.security_headers,
        }))
    }

    /// The guard compiled against tables of its own, outside any cluster, counting nowhere
    /// (tests).
    #[cfg(test)]
    pub(crate) fn standalone(route: &str, security: &RouteSecurity) -> Option<Arc<Self>> {
        let tables = RouteTables::default();
        let context = GuardContext {
            tables: &tables,
            cluster: None,
            metrics: None,
        };
        Self::compile(route, security, context)
    }

    /// The rate limit's settings and bucket table, if the route has one.
    pub fn rate_table(&self) -> Option<(&RateLimit, &Arc<BucketTable>)> {
        self.rate.as_ref().map(|r| (&r.settings, &r.table))
    }

    /// The token quota table, if the route's API keys have a quota.
    pub fn quota_table(&self) -> Option<&Arc<quota::QuotaTable>> {
        self.keys.as_ref().and_then(|k| k.quota.as_ref())
    }

    /// The route's Basic authentication.
    pub fn basic_auth(&self) -> Option<&basic_auth::BasicAuthCheck> {
        self.basic.as_ref()
    }

    /// Whether responses get the standard security headers (`security_headers: true`).
    pub fn security_headers(&self) -> bool {
        self.security_headers
    }

    /// [`Self::check`], then Basic authentication (bcrypt off the proxy's threads). The rate
    /// limit counts before the password is checked, so it also bounds guessing. On a route with
    /// a token quota, the meter that counts the response's usage against the key.
    pub async fn admit(
        &self,
        client: Option<IpAddr>,
        headers: &HeaderMap,
        now: Instant,
    ) -> Result<Option<quota::Meter>, Refusal> {
        let verdict = self.admit_uncounted(client, headers, now).await;
        if let (Err(refusal), Some(metrics)) = (&verdict, &self.metrics) {
            metrics.rejected(&self.route, refusal.reason());
        }
        verdict
    }

    async fn admit_uncounted(
        &self,
        client: Option<IpAddr>,
        headers: &HeaderMap,
        now: Instant,
    ) -> Result<Option<quota::Meter>, Refusal> {
        let digest = self.precheck(client, headers)?;
        let cluster = self.cluster.as_ref();
        if let Some(rate) = &self.rate {
            let mut ip_text = [0u8; 16];
            let key_bytes = rate.key_bytes(client, headers, &digest, &mut ip_text);
            // In a cluster the bucket is shared; while Redis is away, this instance's own.
            let shared = match &cluster {
                Some(cluster) => {
                    let limit = rate.table.rate();
                    cluster
                        .take(
                            &rate.route,
                            &rate.tag,
                            &sha256(key_bytes),
                            limit.per_second,
                            limit.burst,
                        )
                        .await
                }
                None => None,
            };
            shared
                .unwrap_or_else(|| rate.table.take(key_bytes, now))
                .map_err(|retry_after| Refusal::RateLimited { retry_after })?;
        }
        if let Some(basic) = &self.basic {
            if !basic.authorize(headers).await {
                return Err(Refusal::BasicAuth);
            }
        }
        let metered = self.keys.as_ref().and_then(|keys| {
            let table = keys.quota.as_ref()?;
            keys.verify(headers).map(|digest| (table, digest))
        });
        let Some((table, digest)) = metered else {
            return Ok(None);
        };
        let shared = match &cluster {
            Some(cluster) => table.shared_exhausted(cluster, &digest).await,
            None => None,
        };
        match shared.unwrap_or_else(|| table.exhausted(&digest, now)) {
            Some(retry_after) => Err(Refusal::QuotaExceeded { retry_after }),
            None => Ok(Some(quota::Meter::new(
                table.clone(),
                digest,
                self.cluster.clone(),
            ))),
        }
    }

    /// The route's CORS policy.
    pub fn cors(&self) -> Option<&Cors> {
        self.cors.as_ref()
    }

    /// The route's body size limit.
    pub fn max_body(&self) -> Option<u64> {
        self.max_body
    }

    /// Whether the route is an API (it has `api_keys`): refusals answer in OpenAI's JSON format.
    pub fn is_api(&self) -> bool {
        self.keys.is_some()
    }

    /// The client's key header to take off the upstream request, and what to put instead.
    pub fn key_rewrite(&self) -> Option<(&http::HeaderName, Option<&http::HeaderValue>)> {
        if let Some(keys) = &self.keys {
            return Some((&keys.header, keys.upstream_key.as_ref()));
        }
        // Basic credentials stay at the edge when `forward_authorization: false`.
        self.basic
            .as_ref()
            .filter(|b| !b.forwards_authorization())
            .map(|_| (&AUTHORIZATION, None))
    }

    /// Checks a request from `client` carrying `headers` against this instance's own buckets.
    pub fn check(
        &self,
        client: Option<IpAddr>,
        headers: &HeaderMap,
        now: Instant,
    ) -> Result<(), Refusal> {
        let digest = self.precheck(client, headers)?;
        if let Some(rate) = &self.rate {
            let mut ip_text = [0u8; 16];
            let key_bytes = rate.key_bytes(client, headers, &digest, &mut ip_text);
            rate.table
                .take(key_bytes, now)
                .map_err(|retry_after| Refusal::RateLimited { retry_after })?;
        }
        Ok(())
    }

    /// Access lists, declared body size and API key; the key's digest (zeros without keys).
    fn precheck(&self, client: Option<IpAddr>, headers: &HeaderMap) -> Result<[u8; 32], Refusal> {
        if !access::permits(&self.allow, &self.deny, client) {
            return Err(Refusal::Forbidden);
        }
        let declared = headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        if let (Some(limit), Some(length)) = (self.max_body, declared) {
            if length > limit {
                return Err(Refusal::TooLarge);
            }
        }
        let mut digest = [0u8; 32];
        if let Some(keys) = &self.keys {
            digest = keys.verify(headers).ok_or(Refusal::Unauthorized)?;
        }
        Ok(digest)
    }
}

impl RateCheck {
    /// What the rate limit counts by, for this request.
    fn key_bytes<'a>(
        &self,
        client: Option<IpAddr>,
        headers: &'a HeaderMap,
        digest: &'a [u8; 32],
        ip_text: &'a mut [u8; 16],
    ) -> &'a [u8] {
        match &self.key {
            RateKey::ClientIp => ip_key(client, ip_text),
            RateKey::Header(name) => headers.get(name).map_or(&[], |v| v.as_bytes()),
            RateKey::ApiKey => digest,
        }
    }
}

/// The client address as bytes (IPv4-mapped IPv6 as IPv4), or empty when unknown.
fn ip_key(client: Option<IpAddr>, buffer: &mut [u8; 16]) -> &[u8] {
    match client.map(|ip| ip.to_canonical()) {
        Some(IpAddr::V4(v4)) => {
            buffer[..4].copy_from_slice(&v4.octets());
            &buffer[..4]
        }
        Some(IpAddr::V6(v6)) => {
            *buffer = v6.octets();
            &buffer[..]
        }
        None => &buffer[..0],
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::model::RateLimit;

    fn ip(text: &str) -> Option<IpAddr> {
        Some(text.parse().unwrap())
    }

    fn security(key: RateKey, burst: u32) -> RouteSecurity {
        RouteSecurity {
            rate_limit: Some(RateLimit {
                key,
                count: 1,
                period: Duration::from_secs(60),
                burst,
            }),
            ..Default::default()
        }
    }

    #[test]
    fn api_keys_are_checked_by_digest_and_limit_per_key() {
        let mut settings = security(RateKey::ApiKey, 1);
        settings.api_keys = Some(ApiKeys {
            digests: vec![sha256(b"sk-alice"), sha256(b"sk-bob")],
            header: "authorization".into(),
            upstream_key: Some("sk-upstream".into()),
            quota: None,
        });
        let guard = RouteGuard::standalone("guard-test-keys", &settings).unwrap();
        let now = Instant::now();
        let with = |value: &str| {
            let mut h = HeaderMap::new();
            h.insert("authorization", value.parse().unwrap());
            h
        };
        let client = ip("10.0.0.1");
        assert_eq!(
            guard.check(client, &HeaderMap::new(), now),
            Err(Refusal::Unauthorized)
        );
        assert_eq!(
            guard.check(client, &with("Bearer sk-eve"), now),
            Err(Refusal::Unauthorized)
        );
        assert_eq!(
            guard.check(client, &with("Basic sk-alice"), now),
            Err(Refusal::Unauthorized)
        );
        assert_eq!(guard.check(client, &with("bearer sk-alice"), now), Ok(()));
        assert!(matches!(
            guard.check(client, &with("Bearer sk-alice"), now),
            Err(Refusal::RateLimited { .. })
        ));
        assert_eq!(guard.check(client, &with("Bearer sk-bob"), now), Ok(()));
        assert!(guard.is_api());
        let (header, replacement) = guard.key_rewrite().unwrap();
        assert_eq!(header, "authorization");
        assert_eq!(replacement.unwrap(), "Bearer sk-upstream");
    }

    #[test]
    fn no_settings_no_guard() {
        assert!(RouteGuard::standalone("r", &RouteSecurity::default()).is_none());
    }

    #[test]
    fn rate_limits_count_per_client_address() {
        let guard =
            RouteGuard::standalone("guard-test-ip", &security(RateKey::ClientIp, 2)).unwrap();
        let now = Instant::now();
        let headers = HeaderMap::new();
        assert_eq!(guard.check(ip("10.0.0.1"), &headers, now), Ok(()));
        assert_eq!(guard.check(ip("::ffff:10.0.0.1"), &headers, now), Ok(()));
        assert_eq!(
            guard.check(ip("10.0.0.1"), &headers, now),
            Err(Refusal::RateLimited { retry_after: 60 })
        );
        assert_eq!(guard.check(ip("10.0.0.2"), &headers, now), Ok(()));
    }

    #[test]
    fn rate_limits_count_per_header_value() {
        let key = RateKey::Header("x-user".into());
        let guard = RouteGuard::standalone("guard-test-header", &security(key, 1)).unwrap();
        let now = Instant::now();
        let mut alice = HeaderMap::new();
        alice.insert("x-user", "alice".parse().unwrap());
        let mut bob = HeaderMap::new();
        bob.insert("x-user", "bob".parse().unwrap());
        assert!(guard.check(ip("10.0.0.1"), &alice, now).is_ok());
        assert!(guard.check(ip("10.0.0.2"), &alice, now).is_err());
        assert!(guard.check(ip("10.0.0.1"), &bob, now).is_ok());
    }

    #[test]
    fn access_lists_refuse_before_counting() {
        let mut settings = security(RateKey::ClientIp, 1);
        settings.deny = vec![Cidr::parse("10.0.0.0/8").unwrap()];
        let guard = RouteGuard::standalone("guard-test-deny", &settings).unwrap();
        let now = Instant::now();
        let headers = HeaderMap::new();
        for _ in 0..3 {
            assert_eq!(
                guard.check(ip("10.1.1.1"), &headers, now),
                Err(Refusal::Forbidden)
            );
        }
        assert!(guard.check(ip("192.0.2.1"), &headers, now).is_ok());
    }
}
