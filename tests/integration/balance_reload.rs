//! Balancing state across a hot reload: a server marked down stays down, a request in flight
//! keeps its count until it ends, a client_ip sticky entry keeps its client, and a server added
//! by the reload joins; state belongs to the server (upstream + address), not to the snapshot.

use std::time::Duration;

use crate::balance_support::{
    backend, get, lb_builder, server_of, servers_yaml, total_inflight, try_request, wait_status,
    Replica,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_inflight_and_sticky_state_survive_a_reload() {
    let (a, b, c) = (
        Replica::start("a").await,
        Replica::start("b").await,
        Replica::start("c").await,
    );
    let settings = "    sticky: { mode: client_ip, ttl: 1h }\n    health: { path: /health, interval: 100ms, timeout: 1s, rise: 2, fall: 2 }\n";
    let two = servers_yaml(&[(a.addr, ""), (b.addr, "")]);
    let mut d = lb_builder()
        .upstream_yaml("app", &format!("{two}{settings}"))
        .start()
        .await;
    let lb = d.extra("lb");
    let limit = Duration::from_secs(10);

    b.set_health_status(503);
    wait_status(&d, limit, "b down", |s| {
        server_of(s, "app", b.addr)["state"] == "down"
    })
    .await;
    assert_eq!(backend(&get(lb, "/", &[]).await), "a");
    a.set_delay(Duration::from_millis(2000));
    let slow = tokio::spawn(async move { try_request(lb, "GET", "/slow", &[]).await });
    wait_status(&d, limit, "slow request in flight", |s| {
        server_of(s, "app", a.addr)["inflight"] == 1
    })
    .await;

    // Reload with a third server (and a changed setting).
    let three = servers_yaml(&[(a.addr, ""), (b.addr, ""), (c.addr, "")]);
    let yaml = d
        .initial_yaml()
        .replace(&two, &three)
        .replace("ttl: 1h", "ttl: 2h");
    assert_ne!(yaml, d.initial_yaml());
    d.replace_config(&yaml);
    let s = wait_status(&d, limit, "generation 2", |s| s["generation"] == 2).await;
    let (sa, sb, sc) = (
        server_of(&s, "app", a.addr),
        server_of(&s, "app", b.addr),
        server_of(&s, "app", c.addr),
    );
    assert_eq!(sa["inflight"], 1, "in-flight count kept: {s}");
    assert_eq!(sa["sticky_entries"], 1, "sticky entry kept: {s}");
    assert_eq!(sb["state"], "down", "health kept, not reset to up: {s}");
    assert_eq!(sc["state"], "up");

    let r = slow.await.expect("join").expect("slow answer");
    assert_eq!(r.status, 200);
    a.set_delay(Duration::ZERO);
    // The pinned client stays on `a`; the count that crossed the reload went back to zero.
    for _ in 0..10 {
        assert_eq!(backend(&get(lb, "/", &[]).await), "a");
    }
    // Released when each request's logging ends, just after the client has its answer.
    wait_status(&d, limit, "in-flight back to zero", |s| {
        total_inflight(s) == 0
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sticky_cookies_issued_before_reloads_still_pin() {
    let (a, b, c) = (
        Replica::start("a").await,
        Replica::start("b").await,
        Replica::start("c").await,
    );
    let servers = servers_yaml(&[(a.addr, ""), (b.addr, ""), (c.addr, "")]);
    let mut d = lb_builder()
        .upstream_yaml(
            "app",
            &format!("{servers}    sticky: {{ mode: cookie, cookie: fg_srv, ttl: 3h }}\n"),
        )
        .start()
        .await;
    let lb = d.extra("lb");
    // Three clients, pinned to (likely) different replicas before any reload.
    let mut clients = Vec::new();
    for _ in 0..3 {
        let first = get(lb, "/", &[]).await;
        let set = first.header("set-cookie").expect("sticky cookie");
        let cookie = set.split(';').next().expect("name=value").to_string();
        clients.push((cookie, backend(&first)));
    }
    let limit = Duration::from_secs(10);
    for generation in 2..=6u64 {
        // Alternate a setting that changes nothing for the pinned clients.
        let ttl = if generation % 2 == 0 {
            "ttl: 2h"
        } else {
            "ttl: 3h"
        };
        d.replace_config(&d.initial_yaml().replace("ttl: 3h", ttl));
        wait_status(&d, limit, "reloaded", |s| s["generation"] == generation).await;
        for (cookie, pinned) in &clients {
            for _ in 0..5 {
                let r = get(lb, "/", &[("Cookie", cookie)]).await;
                assert_eq!(
                    &backend(&r),
                    pinned,
                    "cookie {cookie} moved after reload {generation}"
                );
                assert!(
                    r.header("set-cookie").is_none(),
                    "a valid cookie is not re-issued"
                );
            }
        }
    }
}
