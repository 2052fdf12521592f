//! Selection under runtime admin settings: `drain` keeps sticky clients and takes no new ones,
//! `maint` takes nothing (pinned clients move, panic mode included), and the runtime weight
//! replaces the configured one in the policies.

use std::time::Duration;

use http::HeaderValue;

use super::tests::{pick, pool, rules, server};
use super::*;
use crate::balance::sticky::format_id;
use crate::config::model::Health;
use crate::pool::AdminState;

fn request(headers: &HeaderMap) -> RequestInfo<'_> {
    RequestInfo {
        client_ip: None,
        headers,
        tried: &[],
        inference: None,
    }
}

fn cookie_sticky() -> Sticky {
    Sticky {
        mode: StickyMode::Cookie { name: "fg".into() },
        ttl: Duration::from_secs(60),
    }
}

/// A request carrying the sticky cookie of `id`.
fn pinned_headers(id: u64) -> HeaderMap {
    let mut headers = HeaderMap::new();
    let cookie = format!("fg={}", format_id(id));
    headers.insert(COOKIE, HeaderValue::from_str(&cookie).expect("cookie"));
    headers
}

/// Ports picked for `n` new clients.
fn new_client_ports(pool: &UpstreamPool, rules: &Rules<'_>, n: usize) -> Vec<u16> {
    let none = HeaderMap::new();
    (0..n)
        .map(|_| pick(pool, rules, &request(&none)).member.socket.port())
        .collect()
}

#[test]
fn drain_keeps_pinned_clients_and_takes_no_new_ones() {
    let pool = pool(&[server(1, 1), server(2, 1)]);
    let balance = Balance::RoundRobin;
    let sticky = cookie_sticky();
    let r = rules(&balance, Some(&sticky));
    let first = pick(&pool, &r, &request(&HeaderMap::new()));
    let pinned = first.member.clone();
    drop(first);
    pool.set_admin_state(&pinned.address, AdminState::Drain, "test")
        .expect("drain");
    let headers = pinned_headers(pinned.id);
    for _ in 0..10 {
        let p = pick(&pool, &r, &request(&headers));
        assert_eq!(p.member.id, pinned.id, "a pinned client stays");
        assert!(!p.set_cookie);
    }
    let other = if pinned.socket.port() == 1 { 2 } else { 1 };
    assert!(new_client_ports(&pool, &r, 10).iter().all(|p| *p == other));
    // Ready again: new clients reach it again.
    pool.set_admin_state(&pinned.address, AdminState::Ready, "test")
        .expect("ready");
    assert!(new_client_ports(&pool, &r, 4).contains(&pinned.socket.port()));
}

#[test]
fn maint_moves_pinned_clients_and_takes_nothing() {
    let pool = pool(&[server(1, 1), server(2, 1)]);
    let balance = Balance::RoundRobin;
    let sticky = cookie_sticky();
    let r = rules(&balance, Some(&sticky));
    let first = pick(&pool, &r, &request(&HeaderMap::new()));
    let pinned = first.member.clone();
    drop(first);
    pool.set_admin_state(&pinned.address, AdminState::Maint, "test")
        .expect("maint");
    let headers = pinned_headers(pinned.id);
    let moved = pick(&pool, &r, &request(&headers));
    assert_ne!(moved.member.id, pinned.id, "a pinned client moves");
    assert!(moved.set_cookie, "and is pinned again");
    drop(moved);
    assert!(new_client_ports(&pool, &r, 10)
        .iter()
        .all(|p| *p != pinned.socket.port()));
    assert_eq!(pool.retry_candidates(&[], Instant::now()), 1);

    // The other server goes down: panic mode tries it rather than the one in maintenance.
    let other = pool
        .members()
        .iter()
        .find(|m| m.id != pinned.id)
        .cloned()
        .expect("other");
    let policy = Health {
        passive_fails: 1,
        ..Health::default()
    };
    other
        .state
        .record_failure(&policy, "connect", Instant::now());
    assert_eq!(
        pick(&pool, &r, &request(&headers)).member.id,
        other.id,
        "panic mode skips maintenance"
    );
    // Both in maintenance: nothing can take the request.
    pool.set_admin_state(&other.address, AdminState::Maint, "test")
        .expect("maint");
    assert!(matches!(
        pool.select(&r, &request(&headers), Instant::now()),
        Outcome::Unavailable
    ));
    assert_eq!(pool.retry_candidates(&[], Instant::now()), 0);
}

#[test]
fn the_runtime_weight_sets_the_round_robin_share() {
    let pool = pool(&[server(1, 1), server(2, 1)]);
    let balance = Balance::RoundRobin;
    let r = rules(&balance, None);
    let even = new_client_ports(&pool, &r, 8);
    assert_eq!(even.iter().filter(|p| **p == 1).count(), 4);
    pool.set_runtime_weight("127.0.0.1:1", 3, "test")
        .expect("weight");
    let ports = new_client_ports(&pool, &r, 40);
    assert_eq!(ports.iter().filter(|p| **p == 1).count(), 30, "{ports:?}");
    // Weight 0: no new clients, like drain.
    pool.set_runtime_weight("127.0.0.1:1", 0, "test")
        .expect("weight");
    assert!(new_client_ports(&pool, &r, 6).iter().all(|p| *p == 2));
}

#[test]
fn the_runtime_weight_counts_in_the_other_policies() {
    let pool = pool(&[server(1, 1), server(2, 1)]);
    pool.set_runtime_weight("127.0.0.1:2", 3, "test")
        .expect("weight");
    let balance = Balance::LeastInflight;
    let r = rules(&balance, None);
    // Idle servers share by weight.
    let ports = new_client_ports(&pool, &r, 400);
    assert_eq!(ports.iter().filter(|p| **p == 2).count(), 300);
    let balance = Balance::Hash(crate::config::model::HashKey::ClientIp);
    let r = rules(&balance, None);
    let none = HeaderMap::new();
    let heavy = (0..2000u32)
        .filter(|i| {
            let req = RequestInfo {
                client_ip: Some(IpAddr::from(i.to_be_bytes())),
                headers: &none,
                tried: &[],
                inference: None,
            };
            pick(&pool, &r, &req).member.socket.port() == 2
        })
        .count();
    assert!((1350..=1650).contains(&heavy), "{heavy}");
}
