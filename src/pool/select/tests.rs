//! Selection over real pools: stickiness, redispatch, draining, retries, limits, policies.

use std::time::Duration;

use http::HeaderValue;

use super::*;
use crate::balance::sticky::format_id;
use crate::config::model::{Health, Server};

/// Shared with the sibling test modules.
pub(super) fn server(port: u16, weight: u32) -> Server {
    Server::new(([127, 0, 0, 1], port).into(), weight)
}

/// Shared with the sibling test modules.
pub(super) fn pool(servers: &[Server]) -> UpstreamPool {
    let pool = UpstreamPool::new("u");
    pool.set_configured(servers, false, None);
    pool
}

/// Shared with the sibling test modules.
pub(super) fn rules<'a>(balance: &'a Balance, sticky: Option<&'a Sticky>) -> Rules<'a> {
    Rules {
        balance,
        sticky,
        slow_start: None,
        inference: None,
        may_queue: false,
    }
}

/// Shared with the sibling test modules.
pub(super) fn pick(pool: &UpstreamPool, rules: &Rules<'_>, req: &RequestInfo<'_>) -> Pick {
    match pool.select(rules, req, Instant::now()) {
        Outcome::Picked(p) => p,
        other => panic!("expected a pick, got {other:?}"),
    }
}

fn port(p: &Pick) -> u16 {
    p.member.socket.port()
}

#[test]
fn round_robin_follows_weights() {
    let pool = pool(&[server(1, 3), server(2, 1)]);
    let headers = HeaderMap::new();
    let req = RequestInfo {
        client_ip: None,
        headers: &headers,
        tried: &[],
        inference: None,
    };
    let balance = Balance::RoundRobin;
    let ports: Vec<u16> = (0..8)
        .map(|_| port(&pick(&pool, &rules(&balance, None), &req)))
        .collect();
    assert_eq!(ports.iter().filter(|p| **p == 1).count(), 6, "{ports:?}");
}

#[test]
fn cookie_stickiness_pins_and_redispatches_once() {
    let pool = pool(&[server(1, 1), server(2, 1)]);
    let balance = Balance::RoundRobin;
    let sticky = Sticky {
        mode: StickyMode::Cookie { name: "fg".into() },
        ttl: Duration::from_secs(60),
    };
    let r = rules(&balance, Some(&sticky));
    let none = HeaderMap::new();
    let first = pick(
        &pool,
        &r,
        &RequestInfo {
            client_ip: None,
            headers: &none,
            tried: &[],
            inference: None,
        },
    );
    assert!(first.set_cookie);
    let mut headers = HeaderMap::new();
    let cookie = format!("a=b; fg={}", format_id(first.member.id));
    headers.insert(COOKIE, HeaderValue::from_str(&cookie).expect("cookie"));
    let req = RequestInfo {
        client_ip: None,
        headers: &headers,
        tried: &[],
        inference: None,
    };
    for _ in 0..50 {
        let p = pick(&pool, &r, &req);
        assert_eq!(p.member.id, first.member.id);
        assert!(!p.set_cookie);
    }
    assert_eq!(first.member.state.sticky_hits(), 50);
    // Its server goes down: the client moves and must be re-pinned.
    let policy = Health {
        passive_fails: 1,
        ..Health::default()
    };
    first
        .member
        .state
        .record_failure(&policy, "connect", Instant::now());
    let moved = pick(&pool, &r, &req);
    assert_ne!(moved.member.id, first.member.id);
    assert!(moved.set_cookie);
}

#[test]
fn client_ip_table_pins_and_draining_keeps_sticky_clients() {
    let mut servers = vec![server(1, 1), server(2, 1)];
    let pool = pool(&servers);
    let balance = Balance::RoundRobin;
    let sticky = Sticky {
        mode: StickyMode::ClientIp,
        ttl: Duration::from_secs(60),
    };
    let r = rules(&balance, Some(&sticky));
    let headers = HeaderMap::new();
    let ip = |last| RequestInfo {
        client_ip: Some(IpAddr::from([10, 0, 0, last])),
        headers: &headers,
        tried: &[],
        inference: None,
    };
    let a = port(&pick(&pool, &r, &ip(1)));
    let b = port(&pick(&pool, &r, &ip(2)));
    assert_ne!(a, b);
    for _ in 0..10 {
        assert_eq!(port(&pick(&pool, &r, &ip(1))), a);
        assert_eq!(port(&pick(&pool, &r, &ip(2))), b);
    }
    // Drain a's server: its client stays, a new client never lands there.
    servers[usize::from(a - 1)].drain = true;
    pool.set_configured(&servers, false, None);
    assert_eq!(port(&pick(&pool, &r, &ip(1))), a);
    for last in 3..10 {
        assert_eq!(port(&pick(&pool, &r, &ip(last))), b);
    }
}

#[test]
fn retries_skip_tried_servers() {
    let pool = pool(&[server(1, 1), server(2, 1)]);
    let headers = HeaderMap::new();
    let balance = Balance::RoundRobin;
    let first = pick(
        &pool,
        &rules(&balance, None),
        &RequestInfo {
            client_ip: None,
            headers: &headers,
            tried: &[],
            inference: None,
        },
    );
    let tried = [first.member.id];
    for _ in 0..4 {
        let p = pick(
            &pool,
            &rules(&balance, None),
            &RequestInfo {
                client_ip: None,
                headers: &headers,
                tried: &tried,
                inference: None,
            },
        );
        assert_ne!(p.member.id, first.member.id);
    }
    let all = pool.members().iter().map(|m| m.id).collect::<Vec<_>>();
    let outcome = pool.select(
        &rules(&balance, None),
        &RequestInfo {
            client_ip: None,
            headers: &headers,
            tried: &all,
            inference: None,
        },
        Instant::now(),
    );
    assert!(matches!(outcome, Outcome::Unavailable));
}

#[test]
fn full_servers_report_full_and_release_on_drop() {
    let mut limited = server(1, 1);
    limited.max_inflight = Some(2);
    let pool = pool(&[limited]);
    let headers = HeaderMap::new();
    let req = RequestInfo {
        client_ip: None,
        headers: &headers,
        tried: &[],
        inference: None,
    };
    for balance in [Balance::RoundRobin, Balance::LeastInflight, Balance::P2c] {
        let a = pick(&pool, &rules(&balance, None), &req);
        let b = pick(&pool, &rules(&balance, None), &req);
        assert!(matches!(
            pool.select(&rules(&balance, None), &req, Instant::now()),
            Outcome::Full
        ));
        drop(a);
        let c = pick(&pool, &rules(&balance, None), &req);
        drop((b, c));
        assert_eq!(pool.members()[0].state.inflight(), 0);
    }
}

#[test]
fn least_inflight_and_hash_policies() {
    let pool = pool(&[server(1, 1), server(2, 1), server(3, 1)]);
    let headers = HeaderMap::new();
    let req = RequestInfo {
        client_ip: Some(IpAddr::from([192, 168, 1, 1])),
        headers: &headers,
        tried: &[],
        inference: None,
    };
    let least = Balance::LeastInflight;
    let held: Vec<Pick> = (0..6)
        .map(|_| pick(&pool, &rules(&least, None), &req))
        .collect();
    for m in pool.members().iter() {
        assert_eq!(m.state.inflight(), 2);
    }
    drop(held);
    let hash = Balance::Hash(HashKey::ClientIp);
    let first = port(&pick(&pool, &rules(&hash, None), &req));
    for _ in 0..20 {
        assert_eq!(port(&pick(&pool, &rules(&hash, None), &req)), first);
    }
}

#[test]
fn panic_mode_when_every_server_is_down() {
    let pool = pool(&[server(1, 1)]);
    let policy = Health {
        passive_fails: 1,
        ..Health::default()
    };
    pool.members()[0]
        .state
        .record_failure(&policy, "connect", Instant::now());
    let headers = HeaderMap::new();
    let req = RequestInfo {
        client_ip: None,
        headers: &headers,
        tried: &[],
        inference: None,
    };
    let balance = Balance::RoundRobin;
    assert_eq!(port(&pick(&pool, &rules(&balance, None), &req)), 1);
}

#[test]
fn retry_candidates_mirror_what_select_would_take() {
    let mut servers = vec![server(1, 1), server(2, 1), server(3, 1)];
    servers[2].drain = true;
    let pool = pool(&servers);
    let ids: Vec<u64> = pool.members().iter().map(|m| m.id).collect();
    let now = Instant::now();
    // The draining server never counts.
    assert_eq!(pool.retry_candidates(&[], now), 2);
    assert_eq!(pool.retry_candidates(&ids[..1], now), 1);
    // The only untried server is down while a tried one is still up: nowhere to go.
    let policy = Health {
        passive_fails: 1,
        ..Health::default()
    };
    pool.members()[1]
        .state
        .record_failure(&policy, "connect", now);
    assert_eq!(pool.retry_candidates(&ids[..1], now), 0);
    // Everything down: panic mode counts every untried server again.
    pool.members()[0]
        .state
        .record_failure(&policy, "connect", now);
    assert_eq!(pool.retry_candidates(&ids[..1], now), 1);
}
