//! Backend failures as clients see them: 502 for a refused connection, 504 for a backend that
//! never answers within `timeouts.read`, never a hang, and error bodies without internal detail.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::backends::{closed_port, silent_server};
use crate::client::{https_get, Response};
use crate::harness::DaemonBuilder;

/// Words that would reveal internals (pingora error types, OS errors, our config names).
const INTERNAL_WORDS: &[&str] = &[
    "127.0.0.1",
    "ConnectRefused",
    "ConnectTimedout",
    "ConnectError",
    "ReadTimedout",
    "ReadError",
    "InternalError",
    "HTTPStatus",
    "os error",
    "pingora",
    "secretpool",
    "Connection refused",
];

fn assert_no_internal_detail(r: &Response, backend: SocketAddr) {
    let body = r.text();
    assert!(body.len() < 512, "error body too long: {body:?}");
    for word in INTERNAL_WORDS {
        assert!(!body.contains(word), "error body leaks {word:?}: {body:?}");
    }
    let port = backend.port().to_string();
    assert!(!body.contains(&port), "error body leaks the port: {body:?}");
    for (name, value) in &r.headers {
        // A random hex request id may contain the port's digits by chance.
        if name == "x-request-id" {
            assert!(value.bytes().all(|b| b.is_ascii_hexdigit()), "{value}");
            continue;
        }
        assert!(
            !value.contains(&port) && !value.contains("secretpool"),
            "header {name} leaks internals: {value}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_connection_is_502() {
    let closed = closed_port();
    let d = DaemonBuilder::new()
        .route("{ name: down, hosts: [down.test], upstream: secretpool_down }")
        .upstream(
            "secretpool_down",
            &[closed.addr],
            "{ connect: 1s, read: 2s }",
        )
        .start()
        .await;

    let started = Instant::now();
    let r = https_get(d.https, "down.test", "/v1/models").await;
    assert_eq!(r.status, 502, "{}", r.text());
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "502 took {:?}",
        started.elapsed()
    );
    assert_no_internal_detail(&r, closed.addr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_backend_is_504_after_read_timeout() {
    let silent = silent_server().await;
    let d = DaemonBuilder::new()
        .route("{ name: slow, hosts: [slow.test], upstream: secretpool_slow }")
        .upstream("secretpool_slow", &[silent], "{ connect: 1s, read: 1s }")
        .start()
        .await;

    let started = Instant::now();
    let r = https_get(d.https, "slow.test", "/v1/chat/completions").await;
    let took = started.elapsed();
    assert_eq!(r.status, 504, "{}", r.text());
    assert!(
        took >= Duration::from_millis(900),
        "504 before the read timeout: {took:?}"
    );
    assert!(
        took < Duration::from_secs(5),
        "504 long after read: 1s: {took:?}"
    );
    assert_no_internal_detail(&r, silent);
}
