//! Hot reload against the real daemon: file rewrites under steady load (valid ones applied, broken
//! ones refused with their line and the old behaviour kept), SIGHUP and `POST /reload`, a
//! ConfigMap-style symlink swap, and long-lived WebSocket/SSE traffic that outlives reloads.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

use crate::backends::{sse_server, websocket_echo, EchoBackend};
use crate::client::{http_get, http_request, read_events, Request};
use crate::harness::{Daemon, DaemonBuilder};

/// Valid rewrites must be in force within this long (the file watch debounces 200 ms).
const TAKES_EFFECT_WITHIN: Duration = Duration::from_secs(1);
/// How long a refused rewrite is watched for (no) effect.
const REFUSED_OBSERVATION: Duration = Duration::from_millis(400);
const REWRITES: usize = 50;
/// Upper bound on the background load loop.
const MAX_LOAD_REQUESTS: usize = 50_000;

/// The backend name answering `r.test` on the plain listener right now.
async fn backend_for(d: &Daemon) -> Option<String> {
    let addr = d.extra("plain");
    let response = tokio::spawn(async move { http_get(addr, "r.test", "/").await })
        .await
        .ok()?;
    response.header("x-backend").map(str::to_string)
}

/// Polls until `r.test` is served by `expected`, failing after [`TAKES_EFFECT_WITHIN`].
async fn expect_backend_within(d: &Daemon, expected: &str, what: &str) {
    let deadline = Instant::now() + TAKES_EFFECT_WITHIN;
    loop {
        if backend_for(d).await.as_deref() == Some(expected) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: `{expected}` not serving within {TAKES_EFFECT_WITHIN:?}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Steady client load on the plain listener, counting any request that did not get a 200.
struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicUsize>,
    failed: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Load {
    fn start(d: &Daemon) -> Self {
        let addr = d.extra("plain");
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicUsize::new(0));
        let failed = Arc::new(AtomicUsize::new(0));
        let (s, o, f) = (stop.clone(), ok.clone(), failed.clone());
        let task = tokio::spawn(async move {
            for _ in 0..MAX_LOAD_REQUESTS {
                if s.load(Ordering::Relaxed) {
                    break;
                }
                let request = tokio::spawn(async move { http_get(addr, "r.test", "/").await });
                match request.await {
                    Ok(response) if response.status == 200 => o.fetch_add(1, Ordering::Relaxed),
                    _ => f.fetch_add(1, Ordering::Relaxed),
                };
            }
        });
        Self {
            stop,
            ok,
            failed,
            task,
        }
    }

    async fn finish(self) -> (usize, usize) {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.expect("load task");
        (
            self.ok.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }
}

fn two_backend_daemon(a: &EchoBackend, b: &EchoBackend) -> DaemonBuilder {
    DaemonBuilder::new()
        .env("FERROGATE_LOG", "info,ferrogate::reload=debug")
        .extra_listener("plain", false)
        .admin()
        .route("{ name: r, hosts: [r.test], listener: plain, upstream: a }")
        .upstream("a", &[a.addr], "{ connect: 1s, read: 5s }")
        .upstream("b", &[b.addr], "{ connect: 1s, read: 5s }")
}

/// 1-based line of the first line containing `needle`.
fn line_of(yaml: &str, needle: &str) -> usize {
    yaml.lines()
        .position(|l| l.contains(needle))
        .map(|i| i + 1)
        .expect("needle in yaml")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_rewrites_under_load_alternating_valid_and_broken() {
    let (a, b) = (EchoBackend::start("a").await, EchoBackend::start("b").await);
    let mut d = two_backend_daemon(&a, &b).start().await;
    let to_a = d.initial_yaml().to_string();
    let to_b = to_a.replace(
        "listener: plain, upstream: a }",
        "listener: plain, upstream: b }",
    );
    assert_ne!(to_a, to_b);
    expect_backend_within(&d, "a", "initial").await;

    let load = Load::start(&d);
    let mut serving = "a";
    for i in 0..REWRITES {
        if i % 2 == 0 {
            // Valid: switch the route to the other upstream.
            let (yaml, next) = if serving == "a" {
                (&to_b, "b")
            } else {
                (&to_a, "a")
            };
            d.replace_config(yaml);
            expect_backend_within(&d, next, &format!("rewrite {i}")).await;
            serving = next;
        } else {
            // Broken, in two different ways, each pointing at the other upstream so that
            // applying it by mistake would show.
            let base = if serving == "a" { &to_b } else { &to_a };
            let (yaml, needle) = if i % 4 == 1 {
                (
                    format!("{base}bogus_key_{i}: 1\n"),
                    format!("bogus_key_{i}"),
                )
            } else {
                let name = format!("empty_{i}");
                let yaml = base.replace(
                    "upstreams:",
                    &format!("upstreams:\n  {name}: {{ servers: [] }}"),
                );
                (yaml, name)
            };
            d.replace_config(&yaml);
            let line = line_of(&yaml, &needle);
            let deadline = Instant::now() + TAKES_EFFECT_WITHIN * 2;
            let expected = format!("ferrogate.yaml:{line}:");
            while !d.log().contains(&expected) {
                assert!(
                    Instant::now() < deadline,
                    "rewrite {i}: no error naming line {line} in the log"
                );
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            tokio::time::sleep(REFUSED_OBSERVATION).await;
            assert_eq!(
                backend_for(&d).await.as_deref(),
                Some(serving),
                "rewrite {i}: a refused configuration changed the routing"
            );
        }
    }
    let (ok, failed) = load.finish().await;
    assert_eq!(
        failed, 0,
        "client requests failed during reloads ({ok} succeeded)"
    );
    assert!(ok > 100, "the load loop made only {ok} requests");
    let log = d.log();
    assert_eq!(
        log.matches("configuration refused").count(),
        REWRITES / 2,
        "every broken rewrite is refused once"
    );
    assert_eq!(log.matches("configuration reloaded").count(), REWRITES / 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_and_admin_reload_apply_and_report() {
    let (a, b) = (EchoBackend::start("a").await, EchoBackend::start("b").await);
    let d = two_backend_daemon(&a, &b).start().await;
    let admin = d.admin.expect("admin listener");
    let to_b = d.initial_yaml().replace(
        "listener: plain, upstream: a }",
        "listener: plain, upstream: b }",
    );

    // Written in place without the watch noticing first is impossible to guarantee, so check the
    // explicit triggers by their own answers: SIGHUP, then POST /reload.
    std::fs::write(d.config_path(), &to_b).expect("write");
    d.signal("HUP");
    expect_backend_within(&d, "b", "SIGHUP").await;

    std::fs::write(d.config_path(), d.initial_yaml()).expect("write");
    let reload = http_request(admin, &Request::post("admin", "/reload")).await;
    assert_eq!(reload.status, 200, "{}", reload.text());
    assert!(
        reload.text().contains("reloaded generation="),
        "{}",
        reload.text()
    );
    expect_backend_within(&d, "a", "POST /reload").await;

    let broken = format!("{}nonsense: [\n", d.initial_yaml());
    std::fs::write(d.config_path(), &broken).expect("write");
    let refused = http_request(admin, &Request::post("admin", "/reload")).await;
    assert_eq!(refused.status, 422);
    assert!(
        refused.text().contains("ferrogate.yaml:"),
        "{}",
        refused.text()
    );
    assert_eq!(backend_for(&d).await.as_deref(), Some("a"));
    let ready = http_get(admin, "admin", "/readyz").await;
    assert_eq!(ready.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configmap_symlink_swap_is_picked_up() {
    let (a, b) = (EchoBackend::start("a").await, EchoBackend::start("b").await);
    let mut d = two_backend_daemon(&a, &b).configmap_layout().start().await;
    assert!(std::fs::symlink_metadata(d.config_path())
        .expect("config path")
        .file_type()
        .is_symlink());
    expect_backend_within(&d, "a", "initial").await;
    let to_b = d.initial_yaml().replace(
        "listener: plain, upstream: a }",
        "listener: plain, upstream: b }",
    );
    d.replace_config(&to_b);
    expect_backend_within(&d, "b", "..data swap to v2").await;
    d.replace_config(d.initial_yaml().to_string().as_str());
    expect_backend_within(&d, "a", "..data swap to v3").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_and_sse_outlive_ten_reloads() {
    let (a, b) = (EchoBackend::start("a").await, EchoBackend::start("b").await);
    let ws_backend = websocket_echo().await;
    let sse = sse_server(20, Duration::from_millis(100)).await;
    let mut d = two_backend_daemon(&a, &b)
        .route("{ name: ws, hosts: [ws.test], listener: plain, upstream: ws }")
        .route("{ name: sse, hosts: [sse.test], listener: plain, upstream: sse }")
        .upstream("ws", &[ws_backend], "{ connect: 1s, read: 5s }")
        .upstream("sse", &[sse], "{ connect: 1s, read: 5s }")
        .start()
        .await;
    let plain = d.extra("plain");

    let tcp = tokio::net::TcpStream::connect(plain)
        .await
        .expect("connect");
    let url = format!(
        "ws://ws.test:{}/ws/socket.io/?EIO=4&transport=websocket",
        plain.port()
    );
    let (mut ws, _) = tokio_tungstenite::client_async(url, tcp)
        .await
        .expect("WebSocket handshake");
    ws.send(Message::text("before")).await.expect("send");
    assert_eq!(
        ws.next().await.expect("open").expect("echo"),
        Message::text("before")
    );

    let mut sse_stream = tokio::net::TcpStream::connect(plain)
        .await
        .expect("connect");
    let events = tokio::spawn(async move {
        read_events(
            &mut sse_stream,
            &Request::get("sse.test", "/events"),
            20,
            Duration::from_secs(10),
        )
        .await
    });

    let to_b = d.initial_yaml().replace(
        "listener: plain, upstream: a }",
        "listener: plain, upstream: b }",
    );
    for i in 0..10 {
        let (yaml, expected) = if i % 2 == 0 {
            (to_b.clone(), "b")
        } else {
            (d.initial_yaml().to_string(), "a")
        };
        d.replace_config(&yaml);
        expect_backend_within(&d, expected, &format!("reload {i}")).await;
    }

    for i in 0..20 {
        let text = format!("after reloads {i}");
        ws.send(Message::text(text.clone()))
            .await
            .expect("send after reloads");
        let echoed = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("echo in time")
            .expect("still open")
            .expect("echo");
        assert_eq!(echoed, Message::text(text));
    }
    let (head, events) = events.await.expect("sse task");
    assert_eq!(head.status, 200);
    assert_eq!(
        events.len(),
        20,
        "the SSE stream started before the reloads completed"
    );
    assert!(d.log().matches("configuration reloaded").count() >= 10);
}
