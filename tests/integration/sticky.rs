//! Sticky sessions through the real daemon: one cookie keeps 1,000 requests on one replica; a
//! WebSocket and the polling requests of one client share a replica (socket.io); client_ip
//! stickiness expires after its ttl; header stickiness.

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

use crate::balance_support::{
    backend, cookie_pair, get, lb_builder, server_of, servers_yaml, status, Replica,
};
use crate::client::{https_request, Request};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_cookie_keeps_a_thousand_requests_on_one_replica() {
    let (a, b, c) = (
        Replica::start("a").await,
        Replica::start("b").await,
        Replica::start("c").await,
    );
    let servers = servers_yaml(&[(a.addr, ""), (b.addr, ""), (c.addr, "")]);
    let d = lb_builder()
        .route("{ name: secure, hosts: [app.test], upstream: app }")
        .upstream_yaml(
            "app",
            &format!("{servers}    sticky: {{ mode: cookie, cookie: fg_srv, ttl: 3h }}\n"),
        )
        .start()
        .await;
    let lb = d.extra("lb");

    let first = get(lb, "/", &[("Cookie", "session=s1")]).await;
    let set = first
        .header("set-cookie")
        .expect("sticky cookie set")
        .to_string();
    let pinned = backend(&first);
    assert!(set.starts_with("fg_srv="), "{set}");
    for attribute in ["Path=/", "Max-Age=10800", "HttpOnly", "SameSite=Lax"] {
        assert!(set.contains(attribute), "{set} lacks {attribute}");
    }
    assert!(
        !set.contains("Secure"),
        "plain http must not mark it Secure: {set}"
    );
    // The id is opaque: no address in it.
    let value = set
        .split(';')
        .next()
        .unwrap_or_default()
        .trim_start_matches("fg_srv=");
    assert_eq!(value.len(), 16, "{set}");
    assert!(!set.contains("127.0.0.1"));
    // nocache: a response that sets it is private.
    assert_eq!(first.header("cache-control"), Some("private"));

    let jar = format!("session=s1; {}", cookie_pair(&first).expect("pair"));
    for i in 0..1000 {
        let r = get(lb, &format!("/poll?n={i}"), &[("Cookie", &jar)]).await;
        assert_eq!(r.status, 200);
        assert_eq!(backend(&r), pinned, "request {i} left its replica");
        assert!(
            r.header("set-cookie").is_none(),
            "request {i} was re-pinned"
        );
    }
    let on_pinned = [&a, &b, &c]
        .into_iter()
        .find(|r| r.name == pinned)
        .expect("pinned replica");
    assert_eq!(on_pinned.requests(), 1001);
    // indirect: the backend never sees the sticky cookie, only the application's.
    let seen = on_pinned.cookies_seen();
    assert_eq!(seen.len(), 1001);
    assert!(seen.iter().all(|c| c == "session=s1"), "{:?}", &seen[..3]);
    let hits = server_of(&status(&d).await, "app", on_pinned.addr)["sticky_hits"]
        .as_u64()
        .expect("sticky_hits");
    assert_eq!(hits, 1000);

    // Over https the cookie is Secure.
    let r = https_request(d.https, &Request::get("app.test", "/")).await;
    let set = r.header("set-cookie").expect("cookie over https");
    assert!(set.contains("; Secure"), "{set}");
}

async fn websocket_reply(lb: SocketAddr, cookie: &str, text: &str) -> String {
    let mut request = format!("ws://{lb}/ws/socket.io/?EIO=4&transport=websocket")
        .into_client_request()
        .expect("ws request");
    request
        .headers_mut()
        .insert("cookie", cookie.parse().expect("cookie header"));
    let (mut ws, response) = tokio::time::timeout(
        Duration::from_secs(10),
        tokio_tungstenite::connect_async(request),
    )
    .await
    .expect("ws handshake timed out")
    .expect("ws handshake");
    assert_eq!(response.status().as_u16(), 101);
    ws.send(Message::text(text)).await.expect("ws send");
    let reply = tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .expect("ws reply timed out")
        .expect("ws open")
        .expect("ws message");
    let _ = ws.close(None).await;
    reply.into_text().expect("text").as_str().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_and_polling_of_one_client_share_a_replica() {
    let (a, b) = (Replica::start("a").await, Replica::start("b").await);
    let servers = servers_yaml(&[(a.addr, ""), (b.addr, "")]);
    let d = lb_builder()
        .upstream_yaml("app", &format!("{servers}    sticky: {{ mode: cookie }}\n"))
        .start()
        .await;
    let lb = d.extra("lb");
    let mut replicas_used = Vec::new();
    for client in 0..6 {
        // socket.io: a polling handshake first, then the upgrade, then more polling.
        let poll = "/ws/socket.io/?EIO=4&transport=polling";
        let first = get(lb, poll, &[]).await;
        let replica = backend(&first);
        let cookie = cookie_pair(&first).expect("sticky cookie");
        let reply = websocket_reply(lb, &cookie, &format!("hello {client}")).await;
        assert_eq!(
            reply,
            format!("{replica}:hello {client}"),
            "client {client}"
        );
        for _ in 0..5 {
            assert_eq!(
                backend(&get(lb, poll, &[("Cookie", &cookie)]).await),
                replica
            );
        }
        replicas_used.push(replica);
    }
    // Clients were spread over both replicas, each staying on its own.
    assert!(replicas_used.contains(&"a".to_string()) && replicas_used.contains(&"b".to_string()));
    assert_eq!(a.websockets() + b.websockets(), 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_ip_stickiness_expires_after_ttl() {
    let (a, b) = (Replica::start("a").await, Replica::start("b").await);
    let servers = servers_yaml(&[(a.addr, ""), (b.addr, "")]);
    let d = lb_builder()
        .upstream_yaml(
            "app",
            &format!("{servers}    sticky: {{ mode: client_ip, ttl: 2s }}\n"),
        )
        .start()
        .await;
    let lb = d.extra("lb");
    let first = backend(&get(lb, "/", &[]).await);
    for _ in 0..50 {
        assert_eq!(backend(&get(lb, "/", &[]).await), first);
    }
    let (pinned, other) = if first == "a" { (&a, &b) } else { (&b, &a) };
    let s = status(&d).await;
    assert_eq!(server_of(&s, "app", pinned.addr)["sticky_entries"], 1);
    assert_eq!(server_of(&s, "app", other.addr)["sticky_entries"], 0);

    // Each use refreshes the entry; silence longer than the ttl forgets it.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let s = status(&d).await;
    assert_eq!(server_of(&s, "app", pinned.addr)["sticky_entries"], 0);
    // Round robin's next turn is the other replica, and the client now sticks there.
    let moved = backend(&get(lb, "/", &[]).await);
    assert_eq!(moved, other.name);
    for _ in 0..20 {
        assert_eq!(backend(&get(lb, "/", &[]).await), moved);
    }
    assert_eq!(
        server_of(&status(&d).await, "app", other.addr)["sticky_entries"],
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_stickiness_keeps_each_user_on_one_replica() {
    let (a, b, c) = (
        Replica::start("a").await,
        Replica::start("b").await,
        Replica::start("c").await,
    );
    let servers = servers_yaml(&[(a.addr, ""), (b.addr, ""), (c.addr, "")]);
    let d = lb_builder()
        .upstream_yaml(
            "app",
            &format!("{servers}    sticky: {{ mode: header, header: X-OpenWebUI-User-Id }}\n"),
        )
        .start()
        .await;
    let lb = d.extra("lb");
    let mut homes = Vec::new();
    for u in 0..9 {
        let user = format!("u{u}");
        homes.push(backend(
            &get(lb, "/", &[("X-OpenWebUI-User-Id", &user)]).await,
        ));
    }
    for round in 0..5 {
        for (u, home) in homes.iter().enumerate() {
            let user = format!("u{u}");
            let r = get(lb, "/", &[("X-OpenWebUI-User-Id", &user)]).await;
            assert_eq!(&backend(&r), home, "user {u} round {round}");
        }
    }
    for name in ["a", "b", "c"] {
        assert_eq!(homes.iter().filter(|h| *h == name).count(), 3, "{homes:?}");
    }
}
