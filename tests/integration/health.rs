//! Health through the real daemon: a replica killed mid-run costs no idempotent request and
//! moves its sticky clients exactly once; it returns after `rise` checks and slow-starts.
//! Retries respect idempotency.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::balance_support::{
    backend, cookie_pair, get, lb_builder, server_of, servers_yaml, try_request, wait_status,
    Replica, ABORT,
};

/// What one client saw: the replica of each answer and whether it re-pinned the client.
#[derive(Debug, Default)]
struct ClientLog {
    replicas: Vec<String>,
    repins: usize,
    failures: Vec<String>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_replica_costs_no_request_and_sticky_clients_move_once_then_it_comes_back() {
    let (a, b) = (Replica::start("a").await, Replica::start("b").await);
    let servers = servers_yaml(&[(a.addr, ""), (b.addr, "")]);
    let d = lb_builder()
        .upstream_yaml(
            "app",
            &format!(
                "{servers}    sticky: {{ mode: cookie }}\n    health: {{ path: /health, interval: 200ms, timeout: 500ms, rise: 2, fall: 2, slow_start: 3s }}\n"
            ),
        )
        .start()
        .await;
    let lb = d.extra("lb");
    let clients = 8;
    let rounds = 80;
    let done = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let done = done.clone();
        tasks.push(tokio::spawn(async move {
            let mut log = ClientLog::default();
            let mut cookie = String::new();
            for _ in 0..rounds {
                let headers: Vec<(&str, &str)> = if cookie.is_empty() {
                    vec![]
                } else {
                    vec![("Cookie", cookie.as_str())]
                };
                match try_request(lb, "GET", "/poll", &headers).await {
                    Ok(r) if r.status == 200 => {
                        if let Some(pair) = cookie_pair(&r) {
                            if !cookie.is_empty() {
                                log.repins += 1;
                            }
                            cookie = pair;
                        }
                        log.replicas.push(backend(&r));
                    }
                    Ok(r) => log.failures.push(format!("status {}", r.status)),
                    Err(e) => log.failures.push(e),
                }
                done.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            log
        }));
    }
    // Kill `a` once about a quarter of the run is done.
    let deadline = Instant::now() + Duration::from_secs(60);
    while done.load(Ordering::SeqCst) < clients * rounds / 4 {
        assert!(Instant::now() < deadline, "clients made no progress");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    a.stop();
    let mut logs = Vec::new();
    for t in tasks {
        logs.push(t.await.expect("client"));
    }
    for (i, log) in logs.iter().enumerate() {
        assert!(
            log.failures.is_empty(),
            "client {i} failed: {:?}",
            log.failures
        );
        assert_eq!(log.replicas.len(), rounds);
        let switches = log.replicas.windows(2).filter(|w| w[0] != w[1]).count();
        if log.replicas[0] == "a" {
            // Moved once to b, re-pinned once, stayed.
            assert_eq!(switches, 1, "client {i}: {:?}", log.replicas);
            assert_eq!(log.repins, 1, "client {i}");
            assert_eq!(log.replicas.last().map(String::as_str), Some("b"));
        } else {
            assert_eq!(switches, 0, "client {i}: {:?}", log.replicas);
            assert_eq!(log.repins, 0, "client {i}");
        }
    }
    let started_on_a = logs.iter().filter(|l| l.replicas[0] == "a").count();
    assert_eq!(started_on_a, clients / 2, "round robin spreads new clients");

    // Out after `fall` failed checks (or passive ejection), with errors recorded.
    let s = wait_status(&d, Duration::from_secs(10), "a marked down", |s| {
        server_of(s, "app", a.addr)["state"] != "up"
    })
    .await;
    assert!(server_of(&s, "app", a.addr)["failures"].as_u64() > Some(0));

    // Back after `rise` good checks, then a slow-start ramp.
    let checks_before = a.health_checks();
    a.restart().await;
    let s = wait_status(&d, Duration::from_secs(10), "a back up", |s| {
        server_of(s, "app", a.addr)["state"] == "up"
    })
    .await;
    assert!(
        a.health_checks() - checks_before >= 2,
        "rise: 2 needs two good checks"
    );
    let ramp = server_of(&s, "app", a.addr)["effective_weight"]
        .as_f64()
        .expect("effective_weight");
    assert!(ramp < 1.0, "slow start begins below full weight: {ramp}");
    // New clients reach `a` again, and its weight reaches full.
    let before = a.requests();
    for _ in 0..60 {
        let r = get(lb, "/new-client", &[]).await;
        assert_eq!(r.status, 200);
    }
    assert!(a.requests() > before, "a gets new clients again");
    wait_status(&d, Duration::from_secs(10), "slow start completes", |s| {
        server_of(s, "app", a.addr)["effective_weight"].as_f64() == Some(1.0)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_are_for_idempotent_requests_only_once_sent() {
    let (broken, good) = (Replica::start("broken").await, Replica::start("good").await);
    broken.set_status(ABORT);
    let servers = servers_yaml(&[(broken.addr, ""), (good.addr, "")]);
    let d = lb_builder()
        .upstream_yaml(
            "app",
            &format!("{servers}    health: {{ path: /health, interval: 1h, passive_fails: 0 }}\n"),
        )
        .start()
        .await;
    let lb = d.extra("lb");
    // GET reached `broken`, which hung up without answering: replayed on `good`.
    for i in 0..20 {
        let r = try_request(lb, "GET", "/", &[]).await.expect("GET");
        assert_eq!(r.status, 200, "GET {i}");
        assert_eq!(backend(&r), "good");
    }
    assert!(broken.requests() >= 5, "round robin sent GETs to broken");
    // POST is not idempotent: once sent it is never replayed.
    let (broken_before, good_before) = (broken.requests(), good.requests());
    let mut bad_gateway = 0;
    for _ in 0..20 {
        let r = try_request(lb, "POST", "/submit", &[]).await.expect("POST");
        match r.status {
            200 => assert_eq!(backend(&r), "good"),
            502 => bad_gateway += 1,
            other => panic!("unexpected status {other}"),
        }
    }
    assert!(bad_gateway > 0);
    assert_eq!(broken.requests() - broken_before, bad_gateway);
    assert_eq!(good.requests() - good_before, 20 - bad_gateway);
}
