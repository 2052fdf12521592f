//! Active checks alone, no traffic needed: a replica whose `/health` fails goes down after
//! `fall` checks and gets no requests; it returns after `rise` good checks. A draining server
//! gets no new clients.

use std::time::Duration;

use crate::balance_support::{
    backend, get, lb_builder, server_of, servers_yaml, wait_status, Replica,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_health_endpoint_takes_a_replica_out_and_back() {
    let (a, b, c) = (
        Replica::start("a").await,
        Replica::start("b").await,
        Replica::start("c").await,
    );
    let servers = servers_yaml(&[(a.addr, ""), (b.addr, ""), (c.addr, "drain: true")]);
    let d = lb_builder()
        .upstream_yaml(
            "app",
            &format!(
                "{servers}    health: {{ path: /health, interval: 100ms, timeout: 1s, rise: 3, fall: 2, expect_status: 200 }}\n"
            ),
        )
        .start()
        .await;
    let lb = d.extra("lb");
    let s = wait_status(&d, Duration::from_secs(10), "checks ran", |s| {
        server_of(s, "app", a.addr)["checks"].as_u64() >= Some(2)
    })
    .await;
    assert_eq!(server_of(&s, "app", c.addr)["state"], "draining");

    a.set_health_status(503);
    wait_status(&d, Duration::from_secs(10), "a down", |s| {
        server_of(s, "app", a.addr)["state"] == "down"
    })
    .await;
    let before = a.requests();
    for _ in 0..20 {
        assert_eq!(backend(&get(lb, "/", &[]).await), "b");
    }
    assert_eq!(a.requests(), before, "a down receives nothing");

    a.set_health_status(200);
    wait_status(&d, Duration::from_secs(10), "a up again", |s| {
        server_of(s, "app", a.addr)["state"] == "up"
    })
    .await;
    let mut seen = Vec::new();
    for _ in 0..20 {
        seen.push(backend(&get(lb, "/", &[]).await));
    }
    assert!(seen.contains(&"a".to_string()) && seen.contains(&"b".to_string()));
    // The draining replica was checked but never given a request.
    assert!(c.health_checks() > 0);
    assert_eq!(c.requests(), 0);
}
