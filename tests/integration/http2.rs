//! HTTP/2 clients through the daemon. A request body ended by an empty DATA frame carrying
//! END_STREAM (what Go's and Python's h2 clients and `curl -T -` send) reaches a real HTTP/1.1
//! backend (uvicorn) framed exactly once, so the pooled connection stays good for the next
//! request. An h2 connection idle past `idle_timeout` gets a GOAWAY and is closed; one with a
//! slow stream in flight is not. A stream the client resets while the server is still working on
//! it cancels that work (the server connection is dropped).

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use crate::backends::sse_server;
use crate::client::{tls_connect, TlsOptions};
use crate::harness::{DaemonBuilder, DEFAULT_TIMEOUTS};
use crate::uvicorn_env::{Uvicorn, INVALID_REQUEST};

/// Bound on waiting for anything the daemon should do (only the fact is checked, not the time).
const WITHIN: Duration = Duration::from_secs(15);

fn h2_tls(host: &str) -> TlsOptions {
    TlsOptions {
        sni: Some(host.into()),
        alpn: vec![b"h2".to_vec()],
        version: None,
    }
}

/// An h2 client connection to `addr`; the connection is driven by a task of its own whose
/// result (`Ok` only when the server said GOAWAY before closing) is returned by the handle.
async fn h2_client(
    addr: SocketAddr,
    host: &str,
) -> (
    h2::client::SendRequest<Bytes>,
    tokio::task::JoinHandle<Result<(), h2::Error>>,
) {
    let (tls, info) = tls_connect(addr, &h2_tls(host)).await;
    assert_eq!(info.alpn.as_deref(), Some(&b"h2"[..]));
    let (client, connection) = h2::client::handshake(tls).await.expect("h2 handshake");
    (client, tokio::spawn(connection))
}

/// Reads a response body whole.
async fn body_of(response: http::Response<h2::RecvStream>) -> Vec<u8> {
    let mut body = response.into_body();
    let mut got = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.expect("body chunk");
        let _ = body.flow_control().release_capacity(chunk.len());
        got.extend_from_slice(&chunk);
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_ended_by_an_empty_data_frame_reach_uvicorn_framed_once() {
    let uvicorn = Uvicorn::start();
    let d = DaemonBuilder::new()
        .route("{ name: py, hosts: [py.test], upstream: py }")
        .upstream("py", &[uvicorn.addr], DEFAULT_TIMEOUTS)
        .start()
        .await;
    let (mut client, _connection) = h2_client(d.https, "py.test").await;
    let mut answers = Vec::new();
    for i in 0..10 {
        client = client.ready().await.expect("h2 ready");
        let body = Bytes::from(vec![b'x'; 1000 + i]);
        let request = http::Request::post("https://py.test/upload")
            .body(())
            .expect("request");
        let (response, mut stream) = client.send_request(request, false).expect("send");
        stream.send_data(body.clone(), false).expect("data");
        stream
            .send_data(Bytes::new(), true)
            .expect("empty END_STREAM");
        let response = tokio::time::timeout(WITHIN, response)
            .await
            .expect("answered")
            .expect("response");
        let status = response.status().as_u16();
        let text = String::from_utf8_lossy(&body_of(response).await).into_owned();
        answers.push((status, text, body.len()));
    }
    for (i, (status, text, sent)) in answers.iter().enumerate() {
        assert_eq!(*status, 200, "request {i}: {text}\n{}", uvicorn.log());
        assert_eq!(text, &sent.to_string(), "request {i}");
    }
    // A GET after them goes over the same pooled connection and is clean too.
    let (response, _) = client
        .ready()
        .await
        .expect("h2 ready")
        .send_request(
            http::Request::get("https://py.test/")
                .body(())
                .expect("request"),
            true,
        )
        .expect("send");
    let response = response.await.expect("response");
    assert_eq!(response.status().as_u16(), 200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        uvicorn.invalid_requests(),
        0,
        "uvicorn logged {INVALID_REQUEST:?}:\n{}",
        uvicorn.log()
    );
}

/// One HTTP/2 frame's header: length, type, flags, stream id.
struct FrameHead {
    len: usize,
    kind: u8,
    flags: u8,
}

const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
const ACK: u8 = 0x1;

async fn read_frame<S: AsyncRead + Unpin>(s: &mut S) -> Option<(FrameHead, Vec<u8>)> {
    let mut head = [0u8; 9];
    s.read_exact(&mut head).await.ok()?;
    let len = (usize::from(head[0]) << 16) | (usize::from(head[1]) << 8) | usize::from(head[2]);
    let mut payload = vec![0u8; len];
    s.read_exact(&mut payload).await.ok()?;
    Some((
        FrameHead {
            len,
            kind: head[3],
            flags: head[4],
        },
        payload,
    ))
}

fn frame(kind: u8, flags: u8, payload: &[u8]) -> Vec<u8> {
    let len = payload.len();
    let mut out = vec![
        (len >> 16) as u8,
        (len >> 8) as u8,
        len as u8,
        kind,
        flags,
        0,
        0,
        0,
        0,
    ];
    out.extend_from_slice(payload);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_h2_connection_gets_a_goaway_and_is_closed() {
    let sse = sse_server(8, Duration::from_millis(400)).await;
    let d = DaemonBuilder::new()
        .https_listener_with("idle_timeout: 1s")
        .route("{ name: sse, hosts: [sse.test], upstream: sse }")
        .upstream("sse", &[sse], "{ connect: 1s, read: 5s }")
        .start()
        .await;

    // A client that says nothing after the preface: the daemon says GOAWAY, then closes. The
    // frames are read raw (PINGs answered) to see exactly that.
    let (mut tls, info) = tls_connect(d.https, &h2_tls("sse.test")).await;
    assert_eq!(info.alpn.as_deref(), Some(&b"h2"[..]));
    tls.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .expect("preface");
    tls.write_all(&frame(SETTINGS, 0, &[]))
        .await
        .expect("settings");
    let mut goaway = false;
    let closed = tokio::time::timeout(WITHIN, async {
        while let Some((head, payload)) = read_frame(&mut tls).await {
            match head.kind {
                SETTINGS if head.flags & ACK == 0 => {
                    let _ = tls.write_all(&frame(SETTINGS, ACK, &[])).await;
                }
                PING if head.flags & ACK == 0 => {
                    let _ = tls.write_all(&frame(PING, ACK, &payload)).await;
                }
                GOAWAY => {
                    assert!(head.len >= 8, "GOAWAY carries a stream id and a code");
                    assert_eq!(&payload[4..8], &[0, 0, 0, 0], "GOAWAY(NO_ERROR)");
                    goaway = true;
                }
                _ => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the idle connection was not closed");
    assert!(goaway, "no GOAWAY before the close");

    // A stream in flight for longer than idle_timeout (8 events, 400 ms apart) is not cut, and
    // the connection, idle after it, is closed with a GOAWAY (the h2 client ends cleanly only
    // after one).
    let (mut client, connection) = h2_client(d.https, "sse.test").await;
    client = client.ready().await.expect("h2 ready");
    let request = http::Request::get("https://sse.test/v1/stream")
        .body(())
        .expect("request");
    let (response, _) = client.send_request(request, true).expect("send");
    let response = response.await.expect("response");
    assert_eq!(response.status().as_u16(), 200);
    let body = String::from_utf8(body_of(response).await).expect("utf-8");
    let events: Vec<&str> = body.lines().filter(|l| l.starts_with("data:")).collect();
    assert_eq!(events.len(), 8, "{body}");
    // The handle stays: a client that drops every handle closes the connection itself.
    let _still_open = client;
    let ended = tokio::time::timeout(WITHIN, connection)
        .await
        .expect("the idle connection was not closed")
        .expect("joined");
    assert!(ended.is_ok(), "closed without a GOAWAY: {ended:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h2_client_that_resets_its_stream_cancels_generation_on_the_node() {
    // A non-streamed completion: the node answers only when all 500 tokens are made (20 s), so
    // the daemon is still waiting for the response head when the client gives up.
    let node = ferrogate_sim::start(ferrogate_sim::SimConfig {
        models: vec!["m".into()],
        decode_ms: 40.0,
        prefill_tokens_per_sec: 1_000_000.0,
        default_max_tokens: 500,
        ..ferrogate_sim::SimConfig::default()
    })
    .await
    .expect("start simulator");
    let d = DaemonBuilder::new()
        .route("{ name: ai, hosts: [ai.test], upstream: ai }")
        .upstream_yaml(
            "ai",
            &format!(
                "    servers: [ {{ address: {} }} ]\n    inference: {{ engine: vllm, models: [m] }}\n",
                node.addr()
            ),
        )
        .start()
        .await;
    let (client, _connection) = h2_client(d.https, "ai.test").await;
    let mut client = client.ready().await.expect("h2 ready");
    let request = http::Request::post("https://ai.test/v1/chat/completions")
        .header("content-type", "application/json")
        .body(())
        .expect("request");
    let (response, mut stream) = client.send_request(request, false).expect("send");
    let body =
        br#"{"model":"m","stream":false,"messages":[{"role":"user","content":"a long story"}]}"#;
    stream
        .send_data(Bytes::from_static(body), true)
        .expect("body");
    let started = tokio::time::timeout(WITHIN, async {
        while node.stats().running == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(started.is_ok(), "the request never reached the node");
    stream.send_reset(h2::Reason::CANCEL);
    let cancelled = tokio::time::timeout(WITHIN, async {
        while node.stats().totals.cancelled == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(
        cancelled.is_ok(),
        "the node never saw the reset: {:?}",
        node.stats()
    );
    assert_eq!(node.stats().totals.served, 0);
    drop(response);
}
