//! Long-lived traffic through the https listener: a WebSocket that stays open across a long idle
//! period, and SSE events forwarded one by one as the backend sends them.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

use crate::backends::{sse_server, websocket_echo};
use crate::client::{read_events, tls_connect, Request, TlsOptions};
use crate::harness::DaemonBuilder;

/// Longer than pingora's 60 s default downstream read timeout.
const WEBSOCKET_IDLE: Duration = Duration::from_secs(90);
const WEBSOCKET_MESSAGES: usize = 200;
const MESSAGE_TIMEOUT: Duration = Duration::from_secs(5);

const SSE_EVENTS: usize = 10;
const SSE_INTERVAL: Duration = Duration::from_millis(200);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_survives_long_idle_then_echoes() {
    let ws_backend = websocket_echo().await;
    let d = DaemonBuilder::new()
        .route("{ name: ws, hosts: [ws.test], upstream: ws }")
        // A short read timeout on purpose: an upgraded connection follows websocket_idle instead.
        .upstream(
            "ws",
            &[ws_backend],
            "{ connect: 1s, read: 2s, websocket_idle: 1h }",
        )
        .start()
        .await;

    let (tls, _) = tls_connect(d.https, &TlsOptions::http1("ws.test")).await;
    let url = format!(
        "wss://ws.test:{}/ws/socket.io/?EIO=4&transport=websocket",
        d.https.port()
    );
    let (mut ws, response) =
        tokio::time::timeout(MESSAGE_TIMEOUT, tokio_tungstenite::client_async(url, tls))
            .await
            .expect("WebSocket handshake timed out")
            .expect("WebSocket handshake through the proxy");
    assert_eq!(response.status().as_u16(), 101);

    ws.send(Message::text("before idle")).await.expect("send");
    let echoed = tokio::time::timeout(MESSAGE_TIMEOUT, ws.next())
        .await
        .expect("echo timed out")
        .expect("stream open")
        .expect("echo");
    assert_eq!(echoed, Message::text("before idle"));

    tokio::time::sleep(WEBSOCKET_IDLE).await;

    for i in 0..WEBSOCKET_MESSAGES {
        let text = format!("message {i}");
        ws.send(Message::text(text.clone()))
            .await
            .unwrap_or_else(|e| panic!("send {i} after {WEBSOCKET_IDLE:?} idle: {e}"));
        let echoed = tokio::time::timeout(MESSAGE_TIMEOUT, ws.next())
            .await
            .unwrap_or_else(|_| panic!("echo {i} timed out"))
            .unwrap_or_else(|| panic!("connection closed before echo {i}"))
            .unwrap_or_else(|e| panic!("echo {i}: {e}"));
        assert_eq!(echoed, Message::text(text));
    }
    let _ = ws.close(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_events_arrive_one_by_one() {
    let sse = sse_server(SSE_EVENTS, SSE_INTERVAL).await;
    let d = DaemonBuilder::new()
        .route("{ name: sse, hosts: [sse.test], upstream: sse }")
        // read: 1s is longer than the gap between events, much shorter than the whole stream.
        .upstream("sse", &[sse], "{ connect: 1s, read: 1s }")
        .start()
        .await;

    let (mut tls, _) = tls_connect(d.https, &TlsOptions::http1("sse.test")).await;
    let req =
        Request::get("sse.test", "/v1/chat/completions").header("Accept", "text/event-stream");
    let (head, events) = read_events(&mut tls, &req, SSE_EVENTS, Duration::from_secs(15)).await;
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-type"), Some("text/event-stream"));
    let data: Vec<&str> = events.iter().map(|e| e.data.as_str()).collect();
    let expected: Vec<String> = (0..SSE_EVENTS).map(|n| format!("data: {n}")).collect();
    assert_eq!(data, expected);

    let mut gaps: Vec<Duration> = events.windows(2).map(|w| w[1].at - w[0].at).collect();
    gaps.sort();
    let median = gaps[gaps.len() / 2];
    eprintln!("SSE arrival gaps: {gaps:?}");
    assert!(
        median > Duration::from_millis(100),
        "events arrive bunched (median gap {median:?}, gaps {gaps:?})"
    );
}
