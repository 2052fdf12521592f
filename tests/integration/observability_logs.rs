//! Request ids and JSON logs: an id is made when the client sends none (or an odd one), kept when
//! sane, and the backend, the client and the access line all carry the same one; with
//! `log.format: json` every log line is one JSON object. Also: the admin allow list is enforced.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::backends::EchoBackend;
use crate::client::{http_get, https_request, Request};
use crate::harness::{Daemon, DaemonBuilder, DEFAULT_TIMEOUTS};

/// How long an access line may take to reach the log file.
const LOG_TIMEOUT: Duration = Duration::from_secs(5);

/// Every line of the daemon's log parsed as JSON; panics on a line that is not one object.
fn json_lines(d: &Daemon) -> Vec<Value> {
    d.log()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let value: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("log line is not JSON ({e}): {line}"));
            assert!(value.is_object(), "log line is not an object: {line}");
            value
        })
        .collect()
}

/// The access line (target `access`) with this request id, waiting for it to be written.
async fn access_line(d: &Daemon, request_id: &str) -> Value {
    let deadline = Instant::now() + LOG_TIMEOUT;
    loop {
        let found = json_lines(d)
            .into_iter()
            .find(|v| v["target"] == "access" && v["request_id"] == request_id);
        if let Some(line) = found {
            return line;
        }
        assert!(Instant::now() < deadline, "no access line for {request_id}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn is_generated(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_ids_reach_backend_client_and_json_access_log() {
    let app = EchoBackend::start("app").await;
    let d = DaemonBuilder::new()
        .yaml("log: { format: json }")
        .route("{ name: app, hosts: [app.test], upstream: app }")
        .upstream("app", &[app.addr], DEFAULT_TIMEOUTS)
        .start()
        .await;

    // No id: one is made, sent to the backend and returned.
    let r = https_request(d.https, &Request::get("app.test", "/made")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let made = r.header("x-request-id").expect("x-request-id").to_string();
    assert!(is_generated(&made), "{made}");
    assert_eq!(app.last().header("x-request-id"), Some(made.as_str()));

    // A sane id is kept.
    let sent = Request::get("app.test", "/kept").header("X-Request-Id", "client-abc.42");
    let r = https_request(d.https, &sent).await;
    assert_eq!(r.header("x-request-id"), Some("client-abc.42"));
    assert_eq!(app.last().header("x-request-id"), Some("client-abc.42"));

    // An odd one is replaced, not forwarded.
    let odd = Request::get("app.test", "/odd").header("X-Request-Id", "two words;<script>");
    let r = https_request(d.https, &odd).await;
    let replaced = r.header("x-request-id").expect("x-request-id").to_string();
    assert!(is_generated(&replaced), "{replaced}");
    assert_eq!(app.last().header("x-request-id"), Some(replaced.as_str()));

    // Answers made by the proxy itself carry an id too.
    let r = https_request(d.https, &Request::get("nowhere.test", "/lost")).await;
    assert_eq!(r.status, 404);
    let local = r
        .header("x-request-id")
        .expect("x-request-id on a 404")
        .to_string();
    assert!(is_generated(&local), "{local}");
    let line = access_line(&d, &local).await;
    assert_eq!(
        (line["status"].as_u64(), line["route"].as_str()),
        (Some(404), Some("none"))
    );

    // Each access line is a JSON object carrying the id the backend received.
    for (id, path) in [
        (made.as_str(), "/made"),
        ("client-abc.42", "/kept"),
        (replaced.as_str(), "/odd"),
    ] {
        let line = access_line(&d, id).await;
        assert_eq!(line["path"], path, "{line}");
        assert_eq!(line["status"], 200, "{line}");
        assert_eq!(line["route"], "app", "{line}");
        assert_eq!(line["upstream"], "app", "{line}");
        assert_eq!(line["server"], app.addr.to_string(), "{line}");
        assert_eq!(line["listener"], "https", "{line}");
        assert_eq!(line["level"], "INFO", "{line}");
        assert!(line["bytes_out"].as_u64().is_some_and(|n| n > 0), "{line}");
        assert_eq!(line["bytes_in"], 0, "{line}");
        assert!(line["duration_ms"].as_f64().is_some(), "{line}");
        assert!(line["upstream_ms"].as_f64().is_some(), "{line}");
        assert!(line["timestamp"].is_string(), "{line}");
    }
    let received: Vec<String> = app
        .requests()
        .iter()
        .filter_map(|r| r.header("x-request-id").map(str::to_string))
        .collect();
    assert_eq!(
        received,
        [made.as_str(), "client-abc.42", replaced.as_str()]
    );
    // Every line, start-up messages included, parsed above; there are some of those too.
    assert!(json_lines(&d).iter().any(|v| v["target"] != "access"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_log_can_be_switched_off() {
    let app = EchoBackend::start("app").await;
    let d = DaemonBuilder::new()
        .yaml("log: { format: text, access: false }")
        .route("{ name: app, hosts: [app.test], upstream: app }")
        .upstream("app", &[app.addr], DEFAULT_TIMEOUTS)
        .start()
        .await;
    let r = https_request(d.https, &Request::get("app.test", "/quiet")).await;
    assert_eq!(r.status, 200);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let log = d.log();
    assert!(log.contains("listening"), "{log}");
    assert!(!log.contains("/quiet"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_allow_list_refuses_other_peers() {
    let d = DaemonBuilder::new()
        .admin_with("allow: [10.0.0.0/8]")
        .start()
        .await;
    let admin = d.admin.expect("admin");
    let deadline = Instant::now() + LOG_TIMEOUT;
    while tokio::net::TcpStream::connect(admin).await.is_err() {
        assert!(Instant::now() < deadline, "admin listener did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for path in ["/metrics", "/status", "/healthz"] {
        let r = http_get(admin, "localhost", path).await;
        assert_eq!(r.status, 403, "{path}: 127.0.0.1 is not in 10.0.0.0/8");
    }
    drop(d);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_lines_still_buffered_are_written_before_the_daemon_exits() {
    let app = EchoBackend::start("app").await;
    let mut d = DaemonBuilder::new()
        .yaml("log: { format: json }")
        .route("{ name: app, upstream: app }")
        .upstream("app", &[app.addr], DEFAULT_TIMEOUTS)
        .start()
        .await;
    let mut ids = Vec::new();
    for i in 0..20 {
        let req = Request::get("app.test", "/").header("X-Request-Id", &format!("exit-{i}"));
        let r = https_request(d.https, &req).await;
        assert_eq!(r.status, 200);
        ids.push(format!("exit-{i}"));
    }
    // Straight away, well within the batching period.
    d.signal("TERM");
    assert!(
        d.wait_exit(Duration::from_secs(30)).is_some(),
        "the daemon exits"
    );
    let logged: Vec<String> = json_lines(&d)
        .into_iter()
        .filter(|v| v["target"] == "access")
        .filter_map(|v| v["request_id"].as_str().map(str::to_string))
        .collect();
    for id in &ids {
        assert!(logged.contains(id), "no access line for {id}: {logged:?}");
    }
}
