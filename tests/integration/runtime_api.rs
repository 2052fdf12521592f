//! The runtime API through the real daemon and `ferrogate ctl`: `drain` moves new clients off a
//! server while a client pinned by the sticky cookie stays, `disable` moves every client off,
//! `weight` changes the round-robin share; all three survive reloads while the server stays in
//! the file (a drained server's pinned client stays, the shares hold) and are dropped when it
//! leaves and comes back; a peer outside `admin.allow` gets 403.

use std::net::SocketAddr;
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::Value;

use crate::balance_support::{backend, cookie_pair, get, lb_builder, servers_yaml, Replica};
use crate::client::{http_request, Request};
use crate::harness::{Daemon, DaemonBuilder, BIN};

const LIMIT: Duration = Duration::from_secs(10);

/// `ferrogate ctl --admin ADMIN ARGS…`, run off the async workers.
async fn ctl(admin: SocketAddr, args: &[&str]) -> Output {
    let mut command = Command::new(BIN);
    command.arg("ctl").arg("--admin").arg(admin.to_string());
    command.args(args);
    tokio::task::spawn_blocking(move || command.output().expect("run ferrogate ctl"))
        .await
        .expect("join")
}

/// Runs `ctl` and requires success; returns what it printed.
async fn ctl_ok(admin: SocketAddr, args: &[&str]) -> String {
    let out = ctl(admin, args).await;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "ctl {args:?} failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// `GET /servers` as JSON.
async fn servers(d: &Daemon) -> Value {
    let admin = d.admin.expect("admin listener");
    let r = http_request(admin, &Request::get("admin", "/servers")).await;
    assert_eq!(r.status, 200, "{}", r.text());
    serde_json::from_slice(&r.body).expect("/servers is JSON")
}

/// The runtime view of the server at `addr`.
fn server(doc: &Value, upstream: &str, addr: SocketAddr) -> Value {
    doc["upstreams"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|u| u["name"] == upstream)
        .flat_map(|u| u["servers"].as_array().cloned().unwrap_or_default())
        .find(|s| s["address"] == addr.to_string())
        .unwrap_or_else(|| panic!("no server {addr} in {doc:#}"))
}

/// How many of `n` new clients (no cookie) each replica answered, in the order of `names`.
async fn new_clients(lb: SocketAddr, n: usize, names: &[&str]) -> Vec<usize> {
    let mut counts = vec![0; names.len()];
    for _ in 0..n {
        let who = backend(&get(lb, "/", &[]).await);
        let i = names
            .iter()
            .position(|name| *name == who)
            .unwrap_or_else(|| panic!("answered by {who}"));
        counts[i] += 1;
    }
    counts
}

/// Polls `/servers` until `done` holds.
async fn wait_servers(d: &Daemon, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = std::time::Instant::now() + LIMIT;
    loop {
        let doc = servers(d).await;
        if done(&doc) {
            return doc;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: not within {LIMIT:?}: {doc:#}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn server_count(doc: &Value) -> usize {
    doc["upstreams"][0]["servers"]
        .as_array()
        .map_or(0, Vec::len)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_keeps_the_pinned_client_and_disable_moves_everyone() {
    let (a, b) = (Replica::start("a").await, Replica::start("b").await);
    let list = servers_yaml(&[(a.addr, ""), (b.addr, "")]);
    let d = lb_builder()
        .upstream_yaml(
            "app",
            &format!("{list}    sticky: {{ mode: cookie, cookie: fg_srv, ttl: 1h }}\n"),
        )
        .start()
        .await;
    let (lb, admin) = (d.extra("lb"), d.admin.expect("admin"));

    let first = get(lb, "/", &[]).await;
    let cookie = cookie_pair(&first).expect("sticky cookie");
    let pinned_name = backend(&first);
    let (pinned, other) = if pinned_name == "a" {
        (&a, &b)
    } else {
        (&b, &a)
    };
    let pinned_addr = pinned.addr.to_string();

    let printed = ctl_ok(admin, &["drain", "app", &pinned_addr]).await;
    assert!(printed.starts_with("UPSTREAM"), "{printed}");
    assert!(
        printed.contains(&pinned_addr) && printed.contains("drain"),
        "{printed}"
    );
    for _ in 0..10 {
        let r = get(lb, "/", &[("Cookie", &cookie)]).await;
        assert_eq!(backend(&r), pinned.name, "the pinned client stays");
        assert!(r.header("set-cookie").is_none());
    }
    let names = [pinned.name.as_str(), other.name.as_str()];
    assert_eq!(
        new_clients(lb, 10, &names).await,
        vec![0, 10],
        "new clients move off"
    );
    let view = server(&servers(&d).await, "app", pinned.addr);
    assert_eq!(view["admin_state"], "drain");
    assert!(
        view["changed"]["by"]
            .as_str()
            .is_some_and(|by| by.starts_with("127.0.0.1:")),
        "{view}"
    );
    // The status page's JSON shows it too.
    let status = http_request(admin, &Request::get("admin", "/status.json")).await;
    let status: Value = serde_json::from_slice(&status.body).expect("status.json");
    let shown = status["upstreams"][0]["servers"]
        .as_array()
        .and_then(|s| {
            s.iter()
                .find(|s| s["address"] == pinned_addr.as_str())
                .cloned()
        })
        .expect("server on the status page");
    assert_eq!(shown["state"], "draining");
    assert_eq!(shown["state_source"], "admin");
    assert_eq!(shown["admin_change"]["what"], "state drain");

    ctl_ok(admin, &["disable", "app", &pinned_addr]).await;
    let moved = get(lb, "/", &[("Cookie", &cookie)]).await;
    assert_eq!(backend(&moved), other.name, "maint moves the pinned client");
    let cookie = cookie_pair(&moved).expect("re-pinned");
    for _ in 0..5 {
        assert_eq!(
            backend(&get(lb, "/", &[("Cookie", &cookie)]).await),
            other.name
        );
    }
    assert_eq!(new_clients(lb, 6, &names).await, vec![0, 6]);
    let before = pinned.requests();
    assert_eq!(new_clients(lb, 4, &names).await, vec![0, 4]);
    assert_eq!(
        pinned.requests(),
        before,
        "no traffic reaches a server in maint"
    );

    ctl_ok(admin, &["enable", "app", &pinned_addr]).await;
    let counts = new_clients(lb, 10, &names).await;
    assert!(
        counts.iter().all(|n| *n >= 4),
        "both take new clients: {counts:?}"
    );
    let table = ctl_ok(admin, &["servers"]).await;
    assert_eq!(table.lines().count(), 3, "{table}");
    assert!(table.contains("state ready by 127.0.0.1:"), "{table}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weight_changes_the_round_robin_share() {
    let (a, b) = (Replica::start("a").await, Replica::start("b").await);
    let d = lb_builder()
        .upstream_yaml("app", &servers_yaml(&[(a.addr, ""), (b.addr, "")]))
        .start()
        .await;
    let (lb, admin) = (d.extra("lb"), d.admin.expect("admin"));
    assert_eq!(new_clients(lb, 100, &["a", "b"]).await, vec![50, 50]);

    let printed = ctl_ok(admin, &["weight", "app", &a.addr.to_string(), "3"]).await;
    assert!(printed.contains("3 (file 1)"), "{printed}");
    let counts = new_clients(lb, 100, &["a", "b"]).await;
    assert!((74..=76).contains(&counts[0]), "a gets 3 of 4: {counts:?}");

    ctl_ok(admin, &["weight", "app", &a.addr.to_string(), "0"]).await;
    assert_eq!(new_clients(lb, 20, &["a", "b"]).await, vec![0, 20]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_reload_the_drained_servers_pinned_client_stays_and_the_weights_hold() {
    let (a, b, c) = (
        Replica::start("a").await,
        Replica::start("b").await,
        Replica::start("c").await,
    );
    let list = servers_yaml(&[(a.addr, ""), (b.addr, ""), (c.addr, "")]);
    let mut d = lb_builder()
        .upstream_yaml(
            "app",
            &format!(
                "{list}    sticky: {{ mode: cookie, cookie: fg_srv, ttl: 1h }}\n    retries: 2\n"
            ),
        )
        .start()
        .await;
    let (lb, admin) = (d.extra("lb"), d.admin.expect("admin"));
    let names = ["a", "b", "c"];
    let first = get(lb, "/", &[]).await;
    let cookie = cookie_pair(&first).expect("sticky cookie");
    let pinned = backend(&first);
    let replica = |name: &str| [&a, &b, &c].into_iter().find(|r| r.name == name).cloned();
    let pinned_addr = replica(&pinned).expect("pinned replica").addr.to_string();
    let others: Vec<String> = names
        .iter()
        .filter(|n| **n != pinned)
        .map(|n| replica(n).expect("replica").addr.to_string())
        .collect();
    ctl_ok(admin, &["drain", "app", &pinned_addr]).await;
    ctl_ok(admin, &["weight", "app", &others[0], "3"]).await;

    // A file change that keeps the servers: the drain and the weight stay in force.
    let yaml = d.initial_yaml().replace("retries: 2", "retries: 1");
    d.replace_config(&yaml);
    wait_servers(&d, "generation 2", |doc| doc["generation"] == 2).await;
    for _ in 0..5 {
        let r = get(lb, "/", &[("Cookie", &cookie)]).await;
        assert_eq!(
            backend(&r),
            pinned,
            "the pinned client stays after the reload"
        );
    }
    let order: Vec<&str> = [pinned_addr.as_str(), others[0].as_str(), others[1].as_str()]
        .iter()
        .map(|addr| {
            [&a, &b, &c]
                .into_iter()
                .find(|r| r.addr.to_string() == *addr)
                .map(|r| r.name.as_str())
                .expect("replica")
        })
        .collect();
    let counts = new_clients(lb, 40, &order).await;
    assert_eq!(
        counts[0], 0,
        "no new client on the drained server: {counts:?}"
    );
    assert!(
        (29..=31).contains(&counts[1]),
        "weight 3 against 1 after the reload: {counts:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runtime_changes_survive_reloads_until_the_server_leaves() {
    let (a, b, c) = (
        Replica::start("a").await,
        Replica::start("b").await,
        Replica::start("c").await,
    );
    let three = servers_yaml(&[(a.addr, ""), (b.addr, ""), (c.addr, "")]);
    let mut d = lb_builder()
        .upstream_yaml("app", &format!("{three}    retries: 2\n"))
        .start()
        .await;
    let (lb, admin) = (d.extra("lb"), d.admin.expect("admin"));
    let names = ["a", "b", "c"];
    ctl_ok(admin, &["drain", "app", &a.addr.to_string()]).await;
    ctl_ok(admin, &["weight", "app", &b.addr.to_string(), "3"]).await;
    ctl_ok(admin, &["disable", "app", &c.addr.to_string()]).await;
    assert_eq!(new_clients(lb, 8, &names).await, vec![0, 8, 0]);

    // A file change that keeps the servers keeps all three settings.
    let yaml = d.initial_yaml().replace("retries: 2", "retries: 1");
    d.replace_config(&yaml);
    let doc = wait_servers(&d, "generation 2", |doc| doc["generation"] == 2).await;
    assert_eq!(server(&doc, "app", a.addr)["admin_state"], "drain");
    assert_eq!(server(&doc, "app", b.addr)["runtime_weight"], 3);
    assert_eq!(server(&doc, "app", c.addr)["admin_state"], "maint");
    assert_eq!(new_clients(lb, 8, &names).await, vec![0, 8, 0]);

    // POST /reload with b's configured weight changed: b's runtime weight goes, the rest stays.
    let reweighted = servers_yaml(&[(a.addr, ""), (b.addr, "weight: 2"), (c.addr, "")]);
    std::fs::write(d.config_path(), yaml.replace(&three, &reweighted)).expect("write");
    let reload = http_request(admin, &Request::post("admin", "/reload")).await;
    assert_eq!(reload.status, 200, "{}", reload.text());
    let doc = servers(&d).await;
    assert!(doc["generation"].as_u64() >= Some(3), "{doc:#}");
    assert_eq!(server(&doc, "app", b.addr)["runtime_weight"], Value::Null);
    assert_eq!(server(&doc, "app", b.addr)["weight"], 2);
    assert_eq!(server(&doc, "app", a.addr)["admin_state"], "drain");
    assert_eq!(server(&doc, "app", c.addr)["admin_state"], "maint");

    // a and c leave the file, then come back: they start from the file again.
    let only_b = servers_yaml(&[(b.addr, "weight: 2")]);
    d.replace_config(&yaml.replace(&three, &only_b));
    wait_servers(&d, "a and c gone", |doc| server_count(doc) == 1).await;
    d.replace_config(&yaml.replace(&three, &reweighted));
    let doc = wait_servers(&d, "a and c back", |doc| server_count(doc) == 3).await;
    for addr in [a.addr, c.addr] {
        let view = server(&doc, "app", addr);
        assert_eq!(view["admin_state"], "ready", "{view}");
        assert_eq!(view["changed"], Value::Null, "{view}");
    }
    let counts = new_clients(lb, 40, &names).await;
    assert!(
        (9..=11).contains(&counts[0]) && (19..=21).contains(&counts[1]),
        "weights 1, 2, 1 from the file: {counts:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_are_refused_and_other_peers_get_403() {
    let a = Replica::start("a").await;
    let d = lb_builder()
        .upstream_yaml("app", &servers_yaml(&[(a.addr, "")]))
        .start()
        .await;
    let admin = d.admin.expect("admin");
    let post = |path: &str, body: &str| {
        let mut request = Request::post("admin", path);
        request.body = body.as_bytes().to_vec();
        request
    };
    let addr = a.addr.to_string();
    let answer = http_request(admin, &post(&format!("/servers/app/{addr}/state"), "sleep")).await;
    assert_eq!(answer.status, 400, "{}", answer.text());
    let answer = http_request(admin, &post(&format!("/servers/app/{addr}/weight"), "1001")).await;
    assert_eq!(answer.status, 400, "{}", answer.text());
    let answer = http_request(admin, &post("/servers/nope/127.0.0.1:1/state", "drain")).await;
    assert_eq!(answer.status, 404, "{}", answer.text());
    let answer = http_request(admin, &post("/servers/app/127.0.0.1:1/state", "drain")).await;
    assert_eq!(answer.status, 404, "{}", answer.text());
    let answer = http_request(
        admin,
        &Request::get("admin", &format!("/servers/app/{addr}/state")),
    )
    .await;
    assert_eq!(answer.status, 405, "{}", answer.text());
    let out = ctl(admin, &["drain", "app", "127.0.0.1:1"]).await;
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("404") && stderr.contains("127.0.0.1:1"),
        "{stderr}"
    );
    drop(d);

    let d = DaemonBuilder::new()
        .admin_with("allow: [10.0.0.0/8]")
        .extra_listener("lb", false)
        .route("{ name: app, listener: lb, upstream: app }")
        .upstream_yaml("app", &servers_yaml(&[(a.addr, "")]))
        .start()
        .await;
    let admin = d.admin.expect("admin");
    let answer = http_request(admin, &Request::get("admin", "/servers")).await;
    assert_eq!(answer.status, 403);
    let answer = http_request(admin, &post(&format!("/servers/app/{addr}/state"), "maint")).await;
    assert_eq!(answer.status, 403);
    let out = ctl(admin, &["disable", "app", &addr]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("403"));
    assert_eq!(
        backend(&get(d.extra("lb"), "/", &[]).await),
        "a",
        "nothing changed"
    );
}
