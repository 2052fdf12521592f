//! Admission through the real daemon: with `max_inflight: 2` and a slow backend, further
//! requests wait in the bounded queue, the overflow gets 503 with a Retry-After from the
//! predicted drain time at once, a wait
//! longer than `queue.timeout` also ends in 503, and nothing hangs.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::balance_support::{
    backend, lb_builder, servers_yaml, total_inflight, try_request, wait_status, Replica,
};
use crate::client::Response;

fn spawn_get(addr: SocketAddr, path: &str) -> tokio::task::JoinHandle<Result<Response, String>> {
    let path = path.to_string();
    tokio::spawn(async move { try_request(addr, "GET", &path, &[]).await })
}

/// Waits (bounded) until the replica is answering `n` requests at once.
async fn until_busy(replica: &Replica, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while replica.concurrency().0 < n {
        assert!(
            Instant::now() < deadline,
            "{} never reached {n} at once",
            replica.name
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_inflight_queues_then_refuses_with_retry_after() {
    let slow = Replica::start("slow").await;
    slow.set_delay(Duration::from_millis(1000));
    let d = lb_builder()
        .upstream_yaml(
            "app",
            &format!(
                "{}    queue: {{ size: 2, timeout: 5s }}\n",
                servers_yaml(&[(slow.addr, "max_inflight: 2")])
            ),
        )
        .start()
        .await;
    let lb = d.extra("lb");
    let first: Vec<_> = (0..2).map(|i| spawn_get(lb, &format!("/{i}"))).collect();
    until_busy(&slow, 2).await;
    let queued: Vec<_> = (2..4).map(|i| spawn_get(lb, &format!("/{i}"))).collect();
    wait_status(&d, Duration::from_secs(10), "two requests queued", |s| {
        s["upstreams"][0]["queued"] == 2
    })
    .await;
    let admin = d.admin.expect("admin");
    assert!(metrics_text(admin)
        .await
        .contains("ferrogate_queue_depth{upstream=\"app\"} 2"));
    // The queue is full: refused at once, with a hint when to come back: the predicted drain
    // (the two queued requests and this one over two slots, at the 1 s service time assumed
    // before a request was seen to finish: 1.5 s), not the 5 s queue timeout.
    for i in 4..6 {
        let r = try_request(lb, "GET", &format!("/{i}"), &[])
            .await
            .expect("answer");
        assert_eq!(r.status, 503, "{}", r.text());
        assert_eq!(r.header("retry-after"), Some("2"));
    }
    for task in first.into_iter().chain(queued) {
        let r = task.await.expect("join").expect("answer");
        assert_eq!(r.status, 200);
        assert_eq!(backend(&r), "slow");
    }
    assert_eq!(
        slow.concurrency().1,
        2,
        "never more than max_inflight at once"
    );
    assert_eq!(slow.requests(), 4);
    let s = wait_status(&d, Duration::from_secs(5), "idle", |s| {
        total_inflight(s) == 0
    })
    .await;
    assert_eq!(s["upstreams"][0]["queued"], 0);
    let metrics = metrics_text(admin).await;
    assert!(
        metrics.contains("ferrogate_queue_depth{upstream=\"app\"} 0"),
        "{metrics}"
    );
    assert!(
        metrics.contains("ferrogate_queue_rejections_total{upstream=\"app\"} 2"),
        "{metrics}"
    );
    let healthy = format!(
        "ferrogate_upstream_server_healthy{{server=\"{}\",upstream=\"app\"}} 1",
        slow.addr
    );
    assert!(metrics.contains(&healthy), "{metrics}");
}

async fn metrics_text(admin: SocketAddr) -> String {
    let r = try_request(admin, "GET", "/metrics", &[])
        .await
        .expect("metrics");
    r.text()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_longer_than_the_queue_timeout_is_refused() {
    let slow = Replica::start("slow").await;
    slow.set_delay(Duration::from_millis(3000));
    let d = lb_builder()
        .upstream_yaml(
            "app",
            &format!(
                "{}    queue: {{ size: 10, timeout: 300ms }}\n",
                servers_yaml(&[(slow.addr, "max_inflight: 1")])
            ),
        )
        .start()
        .await;
    let lb = d.extra("lb");
    let holder = spawn_get(lb, "/hold");
    until_busy(&slow, 1).await;
    let r = try_request(lb, "GET", "/waits", &[]).await.expect("answer");
    assert_eq!(r.status, 503);
    assert_eq!(r.header("retry-after"), Some("1"));
    let r = holder.await.expect("join").expect("answer");
    assert_eq!(r.status, 200);
    assert_eq!(slow.requests(), 1);
}
