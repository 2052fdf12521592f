//! Validation of the balancing keys: policies, hash keys, sticky, health, retries, queue,
//! per-server limits and discovery, each error at its key with its position.

use std::time::Duration;

use super::tests::{errors, ok, one_error};
use crate::config::model::{Balance, HashKey, StickyMode, DEFAULT_RETRIES};

const BASE: &str = "listeners: { http: 0.0.0.0:80 }\nupstreams:\n  u:\n    servers: [ { address: 10.0.0.1:80 } ]\n";

#[test]
fn policies_and_hash_keys() {
    for (text, expected) in [
        ("round_robin", Balance::RoundRobin),
        ("least_inflight", Balance::LeastInflight),
        ("p2c", Balance::P2c),
        ("hash", Balance::Hash(HashKey::ClientIp)),
    ] {
        let config = ok(&format!("{BASE}    balance: {text}\n"));
        assert_eq!(config.upstreams["u"].balance, expected);
    }
    let config = ok(&format!(
        "{BASE}    balance: hash\n    hash_key: header:X-OpenWebUI-Chat-Id\n"
    ));
    assert_eq!(
        config.upstreams["u"].balance,
        Balance::Hash(HashKey::Header("x-openwebui-chat-id".into()))
    );
    let config = ok(&format!(
        "{BASE}    balance: hash\n    hash_key: cookie:sid\n"
    ));
    assert_eq!(
        config.upstreams["u"].balance,
        Balance::Hash(HashKey::Cookie("sid".into()))
    );
    one_error(
        &format!("{BASE}    balance: hash\n    hash_key: url\n"),
        6,
        "upstreams.u.hash_key",
        "unknown hash key `url`",
    );
    one_error(
        &format!("{BASE}    hash_key: client_ip\n"),
        5,
        "upstreams.u.hash_key",
        "only applies to `balance: hash`",
    );
    one_error(
        &format!("{BASE}    balance: hash\n    hash_key: \"header:bad name\"\n"),
        6,
        "upstreams.u.hash_key",
        "not a valid header name",
    );
}

#[test]
fn sticky_modes_and_defaults() {
    let config = ok(&format!("{BASE}    sticky: {{ mode: cookie }}\n"));
    let sticky = config.upstreams["u"].sticky.clone().expect("sticky");
    assert_eq!(
        sticky.mode,
        StickyMode::Cookie {
            name: "fg_srv".into()
        }
    );
    assert_eq!(sticky.ttl, Duration::from_secs(3 * 3600));
    let config = ok(&format!(
        "{BASE}    sticky: {{ mode: client_ip, ttl: 10m }}\n"
    ));
    let sticky = config.upstreams["u"].sticky.clone().expect("sticky");
    assert_eq!(sticky.mode, StickyMode::ClientIp);
    assert_eq!(sticky.ttl, Duration::from_secs(600));
    let config = ok(&format!(
        "{BASE}    sticky: {{ mode: header, header: X-User }}\n"
    ));
    let sticky = config.upstreams["u"].sticky.clone().expect("sticky");
    assert_eq!(
        sticky.mode,
        StickyMode::Header {
            name: "x-user".into()
        }
    );
    one_error(
        &format!("{BASE}    sticky: {{ mode: header }}\n"),
        5,
        "upstreams.u.sticky",
        "needs `header: NAME`",
    );
    one_error(
        &format!("{BASE}    sticky: {{ mode: cookie, cookie: \"a b\" }}\n"),
        5,
        "upstreams.u.sticky.cookie",
        "not a valid cookie name",
    );
    one_error(
        &format!("{BASE}    sticky: {{ mode: client_ip, ttl: 0s }}\n"),
        5,
        "upstreams.u.sticky.ttl",
        "greater than zero",
    );
    one_error(
        &format!("{BASE}    sticky: {{ mode: client_ip, cookie: c }}\n"),
        5,
        "upstreams.u.sticky.cookie",
        "only applies to `mode: cookie`",
    );
    one_error(
        &format!("{BASE}    sticky: {{ mode: url }}\n"),
        5,
        "upstreams.u.sticky.mode",
        "unknown variant",
    );
}

#[test]
fn health_section() {
    let config = ok(&format!(
        "{BASE}    health: {{ path: /health, interval: 1s, timeout: 500ms, rise: 2, fall: 3, expect_status: 204, passive_fails: 5, eject: 30s, slow_start: 1m }}\n"
    ));
    let health = &config.upstreams["u"].health;
    let active = health.active.clone().expect("active");
    assert_eq!(active.path, "/health");
    assert_eq!(active.interval, Duration::from_secs(1));
    assert_eq!(active.timeout, Duration::from_millis(500));
    assert_eq!(
        (active.rise, active.fall, active.expect_status),
        (2, 3, Some(204))
    );
    assert_eq!(health.passive_fails, 5);
    assert_eq!(health.eject, Duration::from_secs(30));
    assert_eq!(health.slow_start, Some(Duration::from_secs(60)));
    // Without a section: no active checks, passive ejection on.
    let config = ok(BASE);
    assert!(config.upstreams["u"].health.active.is_none());
    assert_eq!(config.upstreams["u"].health.passive_fails, 3);
    // Passive tuning alone starts no active checks; any active key does, with defaults.
    let config = ok(&format!(
        "{BASE}    health: {{ passive_fails: 1, eject: 1m }}\n"
    ));
    assert!(config.upstreams["u"].health.active.is_none());
    assert_eq!(config.upstreams["u"].health.eject, Duration::from_secs(60));
    let config = ok(&format!("{BASE}    health: {{ rise: 1 }}\n"));
    let active = config.upstreams["u"].health.active.clone().expect("active");
    assert_eq!((active.path.as_str(), active.fall), ("/", 3));

    let found = errors(&format!(
        "{BASE}    health: {{ path: health, rise: 0, interval: soon, expect_status: 700 }}\n"
    ));
    let keys: Vec<&str> = found.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "upstreams.u.health.path",
            "upstreams.u.health.rise",
            "upstreams.u.health.interval",
            "upstreams.u.health.expect_status"
        ],
        "{found}"
    );
    assert!(found.iter().all(|e| e.line == 5), "{found}");
    one_error(
        &format!("{BASE}    health: {{ pth: /h }}\n"),
        5,
        "upstreams.u.health.pth",
        "unknown key",
    );
}

#[test]
fn retries_queue_and_server_limits() {
    let config = ok(BASE);
    assert_eq!(config.upstreams["u"].retries, DEFAULT_RETRIES);
    let limited = BASE.replace(
        "10.0.0.1:80 }",
        "10.0.0.1:80, max_inflight: 2, drain: true }",
    );
    let config = ok(&format!(
        "{limited}    retries: 0\n    queue: {{ size: 10, timeout: 2s }}\n"
    ));
    let u = &config.upstreams["u"];
    assert_eq!(u.retries, 0);
    assert_eq!(
        (u.queue.size, u.queue.timeout),
        (10, Duration::from_secs(2))
    );
    assert_eq!(u.servers[0].max_inflight, Some(2));
    assert!(u.servers[0].drain);
    one_error(
        &format!("{BASE}    retries: 11\n"),
        5,
        "upstreams.u.retries",
        "at most 10",
    );
    one_error(
        &BASE.replace("10.0.0.1:80 }", "10.0.0.1:80, max_inflight: 0 }"),
        4,
        "upstreams.u.servers[0].max_inflight",
        "at least 1",
    );
    one_error(
        &format!("{BASE}    queue: {{ size: 1, timeout: 1 }}\n"),
        5,
        "upstreams.u.queue.timeout",
        "missing unit",
    );
    one_error(
        &format!("{BASE}    queue: {{ timeout: 1s }}\n"),
        5,
        "upstreams.u.queue",
        "missing field `size`",
    );
}

#[test]
fn discovery_section() {
    let source = "listeners: { http: 0.0.0.0:80 }\nupstreams:\n  u:\n    discovery: { dns: gpu.svc.cluster.local:8000, refresh: 2s, nameserver: 127.0.0.1:5353 }\n";
    let config = ok(source);
    let d = config.upstreams["u"].discovery.clone().expect("discovery");
    assert_eq!((d.name.as_str(), d.port), ("gpu.svc.cluster.local", 8000));
    assert_eq!(d.refresh, Duration::from_secs(2));
    assert_eq!(d.nameserver, Some("127.0.0.1:5353".parse().expect("addr")));
    assert!(config.upstreams["u"].servers.is_empty());
    let bad = source.replace("gpu.svc.cluster.local:8000", "gpu.svc");
    one_error(&bad, 4, "upstreams.u.discovery.dns", "expected NAME:PORT");
    let bad = source.replace("127.0.0.1:5353", "dns.google");
    one_error(
        &bad,
        4,
        "upstreams.u.discovery.nameserver",
        "expected IP:PORT",
    );
    let bad = source.replace("refresh: 2s", "refresh: 10ms");
    one_error(&bad, 4, "upstreams.u.discovery.refresh", "at least 100ms");
    // Neither servers nor discovery.
    one_error(
        "listeners: { http: 0.0.0.0:80 }\nupstreams:\n  u:\n    servers: []\n",
        4,
        "upstreams.u.servers",
        "at least one server",
    );
}
