//! Token quotas per API key through the real daemon: a backend answering every request with a
//! fixed OpenAI `usage` (a JSON body, or an SSE stream whose last event carries it); a key is
//! served until its counted tokens reach the quota, then refused with 429 and OpenAI's
//! `insufficient_quota` error, with exact counts at the backend; another key is unaffected.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

use crate::backends::read_request;
use crate::client::{https_request, Request};
use crate::harness::{DaemonBuilder, DEFAULT_TIMEOUTS};

/// A backend answering every request with `body` (as `content_type`); counts the requests.
pub async fn usage_backend(
    content_type: &'static str,
    body: String,
) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let served = Arc::new(AtomicUsize::new(0));
    let count = served.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (body, count) = (body.clone(), count.clone());
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                let mut reader = BufReader::new(read);
                while let Ok(Some(_)) = read_request(&mut reader).await {
                    count.fetch_add(1, Ordering::SeqCst);
                    let head = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
                        body.len()
                    );
                    if write.write_all(head.as_bytes()).await.is_err()
                        || write.write_all(body.as_bytes()).await.is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    (addr, served)
}

pub fn digest(key: &str) -> String {
    ferrogate::security::sha256(key.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_refused_once_their_token_quota_is_spent() {
    let json = r#"{"id":"c1","object":"chat.completion","choices":[],"usage":{"prompt_tokens":10,"completion_tokens":30,"total_tokens":40}}"#;
    let (json_addr, json_served) = usage_backend("application/json", json.to_string()).await;
    let sse = "data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}],\"usage\":null}\n\n\
               data: {\"choices\":[],\"usage\":{\"prompt_tokens\":20,\"completion_tokens\":40,\"total_tokens\":60}}\n\n\
               data: [DONE]\n\n";
    let (sse_addr, sse_served) = usage_backend("text/event-stream", sse.to_string()).await;
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys.sha256");
    std::fs::write(
        &keys,
        format!("{}\n{}\n", digest("sk-alice"), digest("sk-bob")),
    )
    .unwrap();
    let quota = format!(
        "api_keys: {{ file: {}, quota: {{ tokens: 100, per: 1d }} }}",
        keys.display()
    );
    let d = DaemonBuilder::new()
        .route(&format!(
            "{{ name: chat, hosts: [json.test], upstream: json, {quota} }}"
        ))
        .route(&format!(
            "{{ name: stream, hosts: [sse.test], upstream: sse, {quota} }}"
        ))
        .upstream("json", &[json_addr], DEFAULT_TIMEOUTS)
        .upstream("sse", &[sse_addr], DEFAULT_TIMEOUTS)
        .start()
        .await;
    let post = |host: &str, key: &str| {
        Request::post(host, "/v1/chat/completions")
            .header("Authorization", &format!("Bearer {key}"))
    };

    // 40 tokens each: 0 → 40 → 80 → 120; the fourth request finds the quota spent.
    for n in 0..3 {
        let r = https_request(d.https, &post("json.test", "sk-alice")).await;
        assert_eq!(r.status, 200, "request {n}: {}", r.text());
    }
    let r = https_request(d.https, &post("json.test", "sk-alice")).await;
    assert_eq!(r.status, 429);
    assert!(
        r.text().contains("\"code\":\"insufficient_quota\""),
        "{}",
        r.text()
    );
    assert!(r.header("retry-after").is_some());
    assert_eq!(json_served.load(Ordering::SeqCst), 3);
    // Another key has its own count.
    assert_eq!(
        https_request(d.https, &post("json.test", "sk-bob"))
            .await
            .status,
        200
    );
    assert_eq!(json_served.load(Ordering::SeqCst), 4);

    // Streamed: the usage event says 60; 0 → 60 → 120, the third is refused.
    for _ in 0..2 {
        let r = https_request(d.https, &post("sse.test", "sk-alice")).await;
        assert_eq!(r.status, 200);
        assert!(r.text().contains("[DONE]"));
    }
    let r = https_request(d.https, &post("sse.test", "sk-alice")).await;
    assert_eq!(r.status, 429);
    assert_eq!(sse_served.load(Ordering::SeqCst), 2);
}
