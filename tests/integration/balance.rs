//! Balancing policies against real replicas through the real daemon: smooth weighted round
//! robin, least in-flight, p2c and consistent hashing, each over 1,000+ requests with a stated
//! tolerance.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::balance_support::{backend, get, lb_builder, servers_yaml, Replica};

/// Sends `total` GETs from `workers` concurrent clients; counts answers per backend.
async fn run(addr: SocketAddr, total: usize, workers: usize) -> HashMap<String, usize> {
    let mut tasks = Vec::new();
    for w in 0..workers {
        tasks.push(tokio::spawn(async move {
            let mut counts: HashMap<String, usize> = HashMap::new();
            for _ in (w..total).step_by(workers) {
                let r = get(addr, "/", &[]).await;
                assert_eq!(r.status, 200, "{}", r.text());
                *counts.entry(backend(&r)).or_default() += 1;
            }
            counts
        }));
    }
    let mut counts = HashMap::new();
    for t in tasks {
        for (k, v) in t.await.expect("worker") {
            *counts.entry(k).or_default() += v;
        }
    }
    counts
}

fn share(counts: &HashMap<String, usize>, name: &str) -> usize {
    counts.get(name).copied().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_honours_weights_within_two_percent() {
    let (a, b, c) = (
        Replica::start("a").await,
        Replica::start("b").await,
        Replica::start("c").await,
    );
    let servers = servers_yaml(&[(a.addr, "weight: 3"), (b.addr, "weight: 2"), (c.addr, "")]);
    let d = lb_builder()
        .upstream_yaml("app", &format!("{servers}    balance: round_robin\n"))
        .start()
        .await;
    let counts = run(d.extra("lb"), 1200, 4).await;
    // Expected 600 / 400 / 200; smooth round robin is exact, allow 2% for nothing at all.
    for (name, expected) in [("a", 600), ("b", 400), ("c", 200)] {
        let got = share(&counts, name);
        assert!(
            got.abs_diff(expected) <= 24,
            "{name}: {got} of 1200, {counts:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p2c_follows_weights_within_twenty_percent() {
    let (a, b, c) = (
        Replica::start("a").await,
        Replica::start("b").await,
        Replica::start("c").await,
    );
    let servers = servers_yaml(&[(a.addr, "weight: 2"), (b.addr, ""), (c.addr, "")]);
    let d = lb_builder()
        .upstream_yaml("app", &format!("{servers}    balance: p2c\n"))
        .start()
        .await;
    let counts = run(d.extra("lb"), 1200, 4).await;
    // Expected 600 / 300 / 300 (two weighted draws, the less loaded per weight wins).
    for (name, expected) in [("a", 600), ("b", 300), ("c", 300)] {
        let got = share(&counts, name);
        assert!(
            got.abs_diff(expected) <= expected / 5,
            "{name}: {got} of 1200, {counts:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_inflight_spreads_idle_load_and_avoids_the_busy_server() {
    let (a, b) = (Replica::start("a").await, Replica::start("b").await);
    let servers = servers_yaml(&[(a.addr, ""), (b.addr, "")]);
    let d = lb_builder()
        .upstream_yaml("app", &format!("{servers}    balance: least_inflight\n"))
        .start()
        .await;
    let lb = d.extra("lb");
    // Idle servers: ties rotate, so one client's sequential requests split evenly.
    let counts = run(lb, 1000, 1).await;
    for name in ["a", "b"] {
        let got = share(&counts, name);
        assert!(
            (450..=550).contains(&got),
            "{name}: {got} of 1000, {counts:?}"
        );
    }
    // `a` becomes slow: while it holds requests, new ones go to `b`.
    a.set_delay(Duration::from_millis(300));
    let before = (a.requests(), b.requests());
    let counts = run(lb, 200, 4).await;
    let (to_a, to_b) = (a.requests() - before.0, b.requests() - before.1);
    assert_eq!(to_a + to_b, 200);
    assert!(
        to_b >= 4 * to_a,
        "slow a got {to_a}, fast b got {to_b}: {counts:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hash_on_a_header_is_sticky_and_adding_a_server_moves_about_a_quarter() {
    let replicas = Arc::new([
        Replica::start("a").await,
        Replica::start("b").await,
        Replica::start("c").await,
        Replica::start("d").await,
    ]);
    let users = 400;
    let mapping = |count: usize| {
        let replicas = replicas.clone();
        async move {
            let list: Vec<(SocketAddr, &str)> =
                replicas[..count].iter().map(|r| (r.addr, "")).collect();
            let d = lb_builder()
                .upstream_yaml(
                    "app",
                    &format!(
                        "{}    balance: hash\n    hash_key: header:X-User\n",
                        servers_yaml(&list)
                    ),
                )
                .start()
                .await;
            let mut map = Vec::new();
            for u in 0..users {
                let user = format!("user-{u}");
                let first = backend(&get(d.extra("lb"), "/", &[("X-User", &user)]).await);
                let again = backend(&get(d.extra("lb"), "/x", &[("X-User", &user)]).await);
                assert_eq!(first, again, "{user} moved between two requests");
                map.push(first);
            }
            map
        }
    };
    let three = mapping(3).await;
    for name in ["a", "b", "c"] {
        let n = three.iter().filter(|b| *b == name).count();
        // Expected 133 each.
        assert!((90..=180).contains(&n), "{name}: {n} of {users}");
    }
    let four = mapping(4).await;
    let moved: Vec<usize> = (0..users).filter(|u| three[*u] != four[*u]).collect();
    // Expected 1/4 = 100; every moved key moved to the new server.
    assert!((60..=140).contains(&moved.len()), "{} moved", moved.len());
    assert!(moved.iter().all(|u| four[*u] == "d"));
}
