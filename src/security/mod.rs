//! Edge security for a route: client address access lists and rate limits, checked in the request
//! filter before anything is proxied. [`RouteGuard`] is compiled into the snapshot; the token
//! buckets behind it are long-lived state kept by route name in [`limiters`], so a reload that
//! leaves a route's rate limit unchanged keeps every client's bucket.

pub mod access;
pub mod bucket;
pub mod client;
pub mod limiters;
pub mod proxy_header;
pub mod proxy_protocol;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use http::HeaderMap;

use crate::config::model::{Cidr, RateKey, RouteSecurity};
use bucket::BucketTable;

/// Why a request was refused at the edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The client address is denied or not allowed (403).
    Forbidden,
    /// The rate limit's bucket is empty (429); seconds until the next token.
    RateLimited { retry_after: u64 },
}

impl Refusal {
    /// The metric label for this refusal.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Forbidden => "access",
            Self::RateLimited { .. } => "rate_limit",
        }
    }
}

/// One route's compiled checks.
#[derive(Debug)]
pub struct RouteGuard {
    allow: Vec<Cidr>,
    deny: Vec<Cidr>,
    rate: Option<(RateKey, Arc<BucketTable>)>,
}

impl RouteGuard {
    /// The guard for `route`'s settings; `None` when it asks for no checks.
    pub fn compile(route: &str, security: &RouteSecurity) -> Option<Arc<Self>> {
        if security.is_empty() {
            return None;
        }
        Some(Arc::new(Self {
            allow: security.allow.clone(),
            deny: security.deny.clone(),
            rate: security
                .rate_limit
                .as_ref()
                .map(|limit| (limit.key.clone(), limiters::table_for(route, limit))),
        }))
    }

    /// Checks a request from `client` carrying `headers`.
    pub fn check(
        &self,
        client: Option<IpAddr>,
        headers: &HeaderMap,
        now: Instant,
    ) -> Result<(), Refusal> {
        if !access::permits(&self.allow, &self.deny, client) {
            return Err(Refusal::Forbidden);
        }
        if let Some((key, table)) = &self.rate {
            let mut ip_text = [0u8; 16];
            let key_bytes: &[u8] = match key {
                RateKey::ClientIp => ip_key(client, &mut ip_text),
                RateKey::Header(name) => headers.get(name).map_or(&[], |v| v.as_bytes()),
            };
            table
                .take(key_bytes, now)
                .map_err(|retry_after| Refusal::RateLimited { retry_after })?;
        }
        Ok(())
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
    fn no_settings_no_guard() {
        assert!(RouteGuard::compile("r", &RouteSecurity::default()).is_none());
    }

    #[test]
    fn rate_limits_count_per_client_address() {
        let guard = RouteGuard::compile("guard-test-ip", &security(RateKey::ClientIp, 2)).unwrap();
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
        let guard = RouteGuard::compile("guard-test-header", &security(key, 1)).unwrap();
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
        let guard = RouteGuard::compile("guard-test-deny", &settings).unwrap();
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
