//! Tests of the route security keys: `rate_limit`, `allow`, `deny`.

use std::time::Duration;

use super::tests::{errors, ok, one_error, MINIMAL};
use crate::config::model::{Cidr, RateKey, RateLimit};

/// MINIMAL with its one route given `extra` keys.
fn route_with(extra: &str) -> String {
    MINIMAL.replace(
        "  - { name: app, upstream: app }\n",
        &format!("  - {{ name: app, upstream: app, {extra} }}\n"),
    )
}

#[test]
fn a_rate_limit_is_compiled_with_defaults() {
    let config = ok(&route_with("rate_limit: { rate: 10/s }"));
    assert_eq!(
        config.routes[0].security.rate_limit,
        Some(RateLimit {
            key: RateKey::ClientIp,
            count: 10,
            period: Duration::from_secs(1),
            burst: 10,
        })
    );
    let config = ok(&route_with(
        "rate_limit: { key: 'header:X-User', rate: 100/h, burst: 7 }",
    ));
    let limit = config.routes[0].security.rate_limit.clone().unwrap();
    assert_eq!(limit.key, RateKey::Header("x-user".into()));
    assert_eq!(limit.burst, 7);
}

#[test]
fn rate_limit_errors_point_at_their_key() {
    one_error(
        &route_with("rate_limit: { rate: 10/d }"),
        4,
        "routes[0].rate_limit.rate",
        "invalid rate",
    );
    one_error(
        &route_with("rate_limit: { rate: 0/s }"),
        4,
        "routes[0].rate_limit.rate",
        "at least 1",
    );
    one_error(
        &route_with("rate_limit: { rate: 1/s, burst: 0 }"),
        4,
        "routes[0].rate_limit.burst",
        "at least 1",
    );
    one_error(
        &route_with("rate_limit: { rate: 1/s, key: cookie }"),
        4,
        "routes[0].rate_limit.key",
        "unknown rate_limit key",
    );
    one_error(
        &route_with("rate_limit: { rate: 1/s, key: api_key }"),
        4,
        "routes[0].rate_limit.key",
        "needs `api_keys`",
    );
    let found = errors(&route_with("rate_limit: { rate: 1/s, per: 3 }"));
    assert_eq!(found.len(), 1, "{found}");
}

#[test]
fn access_lists_parse_every_range() {
    let config = ok(&route_with(
        "allow: [10.0.0.0/8, 192.168.1.5], deny: ['fd00::/8']",
    ));
    let security = &config.routes[0].security;
    assert_eq!(
        security.allow,
        [
            Cidr::parse("10.0.0.0/8").unwrap(),
            Cidr::parse("192.168.1.5").unwrap()
        ]
    );
    assert_eq!(security.deny, [Cidr::parse("fd00::/8").unwrap()]);
    let found = errors(&route_with("allow: [10.0.0.0/8, 10.0.0.0/40], deny: [x]"));
    let keys: Vec<&str> = found.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(keys, ["routes[0].allow[1]", "routes[0].deny[0]"], "{found}");
    one_error(&route_with("deny: []"), 4, "routes[0].deny", "empty list");
}

#[test]
fn proxy_protocol_needs_its_trusted_sources() {
    let with_extra = |keys: &str| {
        MINIMAL.replace(
            "  https: 127.0.0.1:8443\n",
            &format!("  https: 127.0.0.1:8443\n  extra:\n    - {{ name: lb, address: 127.0.0.1:8600{keys} }}\n"),
        )
    };
    let config = ok(&with_extra(
        ", proxy_protocol: true, proxy_protocol_from: [10.0.0.0/8]",
    ));
    let lb = config.listeners.iter().find(|l| l.name == "lb").unwrap();
    assert_eq!(
        lb.proxy_protocol,
        Some(vec![Cidr::parse("10.0.0.0/8").unwrap()])
    );
    let https = config.listeners.iter().find(|l| l.name == "https").unwrap();
    assert_eq!(https.proxy_protocol, None);
    one_error(
        &with_extra(", proxy_protocol: true"),
        4,
        "listeners.extra[0].proxy_protocol",
        "proxy_protocol_from",
    );
    one_error(
        &with_extra(", proxy_protocol_from: [10.0.0.0/8]"),
        4,
        "listeners.extra[0].proxy_protocol_from",
        "no effect",
    );
    one_error(
        &with_extra(", proxy_protocol: true, proxy_protocol_from: [bad]"),
        4,
        "listeners.extra[0].proxy_protocol_from[0]",
        "invalid CIDR",
    );
}

#[test]
fn trusted_proxies_are_cidr_ranges() {
    let config = ok(&format!("{MINIMAL}trusted_proxies: [10.0.0.0/8, '::1']\n"));
    assert_eq!(config.trusted_proxies.len(), 2);
    assert!(ok(MINIMAL).trusted_proxies.is_empty());
    one_error(
        &format!("{MINIMAL}trusted_proxies: [10.0.0.0/8, nope]\n"),
        8,
        "trusted_proxies[1]",
        "invalid CIDR",
    );
}

#[test]
fn max_body_is_a_size() {
    let config = ok(&route_with("max_body: 10MB"));
    assert_eq!(config.routes[0].security.max_body, Some(10 << 20));
    let config = ok(&route_with("max_body: 4096"));
    assert_eq!(config.routes[0].security.max_body, Some(4096));
    one_error(
        &route_with("max_body: 10TB"),
        4,
        "routes[0].max_body",
        "invalid size",
    );
}

#[test]
fn cors_origins_and_defaults() {
    let config = ok(&route_with("cors: { origins: ['https://app.example'] }"));
    let cors = config.routes[0].security.cors.clone().unwrap();
    assert_eq!(cors.methods, ["GET", "HEAD", "POST"]);
    assert_eq!(cors.max_age, Duration::from_secs(600));
    assert!(!cors.credentials);
    one_error(
        &route_with("cors: { origins: ['app.example'] }"),
        4,
        "routes[0].cors.origins[0]",
        "scheme://host",
    );
    one_error(
        &route_with("cors: { origins: [] }"),
        4,
        "routes[0].cors.origins",
        "at least one origin",
    );
    one_error(
        &route_with("cors: { origins: ['*'], max_age: soon }"),
        4,
        "routes[0].cors.max_age",
        "invalid duration",
    );
}
