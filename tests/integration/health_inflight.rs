//! In-flight accounting through the real daemon: counters rise while requests are outstanding
//! and return to zero after clients disconnect mid-request, WebSockets drop, and backends
//! answer 5xx, hang up or refuse connections.

use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::backends::closed_port;
use crate::balance_support::{
    lb_builder, server_of, servers_yaml, total_inflight, try_request, wait_status, Replica, ABORT,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inflight_returns_to_zero_after_disconnects_and_backend_errors() {
    let slow = Replica::start("slow").await;
    slow.set_delay(Duration::from_millis(1500));
    let erroring = Replica::start("erroring").await;
    erroring.set_status(500);
    let hanging_up = Replica::start("hanging-up").await;
    hanging_up.set_status(ABORT);
    let refused = closed_port();
    let d = lb_builder()
        .extra_listener("bad", false)
        .route("{ name: bad, listener: bad, upstream: bad }")
        .upstream_yaml(
            "app",
            &format!(
                "{}    balance: least_inflight\n",
                servers_yaml(&[(slow.addr, "")])
            ),
        )
        .upstream_yaml(
            "bad",
            &format!(
                "{}    retries: 0\n",
                servers_yaml(&[
                    (erroring.addr, ""),
                    (hanging_up.addr, ""),
                    (refused.addr, "")
                ])
            ),
        )
        .start()
        .await;

    // Clients that send a request and vanish while the backend is still working on it.
    let lb = d.extra("lb");
    let mut abandoned = Vec::new();
    for i in 0..5 {
        let mut stream = TcpStream::connect(lb).await.expect("connect");
        let req = format!("GET /slow/{i} HTTP/1.1\r\nHost: app.test\r\n\r\n");
        stream.write_all(req.as_bytes()).await.expect("write");
        abandoned.push(stream);
    }
    let s = wait_status(&d, Duration::from_secs(10), "requests in flight", |s| {
        server_of(s, "app", slow.addr)["inflight"] == 5
    })
    .await;
    assert_eq!(total_inflight(&s), 5);
    drop(abandoned);

    // A WebSocket holds a slot while open and gives it back when the client drops it.
    let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{lb}/ws"))
        .await
        .expect("ws handshake");
    wait_status(&d, Duration::from_secs(10), "websocket in flight", |s| {
        server_of(s, "app", slow.addr)["inflight"].as_u64() >= Some(1)
    })
    .await;
    drop(ws);

    // Backends that fail: 5xx, hang up after the request, refuse the connection.
    let bad = d.extra("bad");
    let mut statuses = Vec::new();
    for _ in 0..30 {
        let r = try_request(bad, "GET", "/", &[]).await.expect("an answer");
        statuses.push(r.status);
    }
    assert!(statuses.iter().all(|s| *s >= 500), "{statuses:?}");
    assert!(
        statuses.contains(&500) && statuses.contains(&502),
        "{statuses:?}"
    );

    let s = wait_status(
        &d,
        Duration::from_secs(15),
        "every counter back to zero",
        |s| total_inflight(s) == 0,
    )
    .await;
    for addr in [erroring.addr, hanging_up.addr, refused.addr] {
        let server = server_of(&s, "bad", addr);
        assert!(server["failures"].as_u64() > Some(0), "{server}");
        assert!(!server["recent_errors"]
            .as_array()
            .expect("errors")
            .is_empty());
    }
}
