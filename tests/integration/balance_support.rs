//! Support for the balancing tests: `Replica`, a backend that can be stopped, restarted, slowed,
//! made to fail and upgraded to a WebSocket; a client that reports failures instead of panicking;
//! the daemon's `/status.json`; and a daemon builder preset with a plain `lb` listener.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::client::{parse_response, Response};
use crate::harness::{Daemon, DaemonBuilder};

/// Longest wait for one request in these tests.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// A replica answering this status closes the connection without a response instead.
pub const ABORT: u16 = 999;
/// Where the admin listener serves the balancer's per-server status.
pub const STATUS_PATH: &str = "/status/upstreams.json";
/// Longest request head a replica reads.
const MAX_HEAD: usize = 64 * 1024;

#[derive(Default)]
struct ReplicaState {
    requests: AtomicUsize,
    health_checks: AtomicUsize,
    websockets: AtomicUsize,
    /// 0 = 200.
    status: AtomicU16,
    /// Status of `/health`; 0 = 200.
    health_status: AtomicU16,
    delay_ms: AtomicU64,
    current: AtomicUsize,
    max_current: AtomicUsize,
    cookies_seen: Mutex<Vec<String>>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

/// A backend replica: answers `X-Backend: NAME`, `/health` separately, WebSockets by echoing
/// `NAME:text`; can be stopped (listener and every connection closed) and restarted on its port.
#[derive(Clone)]
pub struct Replica {
    pub name: String,
    pub addr: SocketAddr,
    state: Arc<ReplicaState>,
}

impl Replica {
    pub async fn start(name: &str) -> Self {
        Self::start_at(name, "127.0.0.1:0".parse().expect("addr"))
            .await
            .expect("bind replica")
    }

    /// Starts on `addr` (port 0 = any); the bind error when it is taken.
    pub async fn start_at(name: &str, addr: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let replica = Self {
            name: name.to_string(),
            addr: listener.local_addr().expect("replica addr"),
            state: Arc::new(ReplicaState::default()),
        };
        replica.serve(listener);
        Ok(replica)
    }

    fn serve(&self, listener: TcpListener) {
        let me = self.clone();
        let accept = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let conn = me.clone();
                let task = tokio::spawn(async move {
                    let _ = conn.connection(stream).await;
                });
                me.state.tasks.lock().expect("tasks").push(task);
            }
        });
        self.state.tasks.lock().expect("tasks").push(accept);
    }

    /// Closes the listener and every open connection (like a killed process).
    pub fn stop(&self) {
        for task in self.state.tasks.lock().expect("tasks").drain(..) {
            task.abort();
        }
    }

    /// Listens again on the same address.
    pub async fn restart(&self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match TcpListener::bind(self.addr).await {
                Ok(listener) => return self.serve(listener),
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("rebind {}: {e}", self.addr),
            }
        }
    }

    pub fn set_status(&self, status: u16) {
        self.state.status.store(status, Ordering::SeqCst);
    }

    pub fn set_health_status(&self, status: u16) {
        self.state.health_status.store(status, Ordering::SeqCst);
    }

    pub fn set_delay(&self, delay: Duration) {
        self.state
            .delay_ms
            .store(delay.as_millis() as u64, Ordering::SeqCst);
    }

    /// Requests received (health checks excluded).
    pub fn requests(&self) -> usize {
        self.state.requests.load(Ordering::SeqCst)
    }

    pub fn health_checks(&self) -> usize {
        self.state.health_checks.load(Ordering::SeqCst)
    }

    pub fn websockets(&self) -> usize {
        self.state.websockets.load(Ordering::SeqCst)
    }

    /// Requests being answered now, and the most ever at once.
    pub fn concurrency(&self) -> (usize, usize) {
        (
            self.state.current.load(Ordering::SeqCst),
            self.state.max_current.load(Ordering::SeqCst),
        )
    }

    /// Every `Cookie` header value received.
    pub fn cookies_seen(&self) -> Vec<String> {
        self.state.cookies_seen.lock().expect("cookies").clone()
    }

    async fn connection(&self, mut stream: TcpStream) -> std::io::Result<()> {
        let mut buf = Vec::new();
        loop {
            let Some((head, body_len)) = read_head(&mut stream, &mut buf).await? else {
                return Ok(());
            };
            while buf.len() < body_len {
                let mut chunk = [0u8; 8192];
                let n = stream.read(&mut chunk).await?;
                if n == 0 {
                    return Ok(());
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            buf.drain(..body_len);
            if head.to_ascii_lowercase().contains("upgrade: websocket") {
                // Also on a reused keep-alive connection, not only a fresh one.
                return self.websocket(stream, &head).await;
            }
            let path = head.split(' ').nth(1).unwrap_or("/").to_string();
            if path == "/health" {
                self.state.health_checks.fetch_add(1, Ordering::SeqCst);
                let status = match self.state.health_status.load(Ordering::SeqCst) {
                    0 => 200,
                    s => s,
                };
                respond(&mut stream, status, &self.name, "ok\n").await?;
                continue;
            }
            self.state.requests.fetch_add(1, Ordering::SeqCst);
            for line in head.lines() {
                if let Some((n, v)) = line.split_once(':') {
                    if n.trim().eq_ignore_ascii_case("cookie") {
                        self.state
                            .cookies_seen
                            .lock()
                            .expect("cookies")
                            .push(v.trim().to_string());
                    }
                }
            }
            let now = self.state.current.fetch_add(1, Ordering::SeqCst) + 1;
            self.state.max_current.fetch_max(now, Ordering::SeqCst);
            let delay = self.state.delay_ms.load(Ordering::SeqCst);
            if delay > 0 {
                tokio::time::sleep(Duration::from_millis(delay)).await;
            }
            self.state.current.fetch_sub(1, Ordering::SeqCst);
            let status = match self.state.status.load(Ordering::SeqCst) {
                0 => 200,
                s => s,
            };
            if status == ABORT {
                return Ok(());
            }
            let body = format!("backend: {}\npath: {path}\n", self.name);
            respond(&mut stream, status, &self.name, &body).await?;
        }
    }

    async fn websocket(&self, mut stream: TcpStream, head: &str) -> std::io::Result<()> {
        let key = head
            .lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(n, _)| n.trim().eq_ignore_ascii_case("sec-websocket-key"))
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_default();
        let accept = derive_accept_key(key.as_bytes());
        let answer = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\nX-Backend: {}\r\n\r\n",
            self.name
        );
        stream.write_all(answer.as_bytes()).await?;
        let mut ws = WebSocketStream::from_raw_socket(stream, Role::Server, None).await;
        self.state.websockets.fetch_add(1, Ordering::SeqCst);
        while let Some(Ok(msg)) = ws.next().await {
            if let Message::Text(text) = msg {
                let reply = format!("{}:{}", self.name, text.as_str());
                if ws.send(Message::text(reply)).await.is_err() {
                    break;
                }
            } else if msg.is_close() {
                break;
            }
        }
        Ok(())
    }
}

/// Reads a request head into `buf`; returns it and the Content-Length, the rest left in `buf`.
async fn read_head(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
) -> std::io::Result<Option<(String, usize)>> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            buf.drain(..end + 4);
            let len = head
                .lines()
                .filter_map(|l| l.split_once(':'))
                .find(|(n, _)| n.trim().eq_ignore_ascii_case("content-length"))
                .and_then(|(_, v)| v.trim().parse().ok())
                .unwrap_or(0);
            return Ok(Some((head, len)));
        }
        if buf.len() > MAX_HEAD {
            return Ok(None);
        }
        let mut chunk = [0u8; 8192];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

async fn respond(
    stream: &mut TcpStream,
    status: u16,
    name: &str,
    body: &str,
) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status} X\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nX-Backend: {name}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.flush().await
}

/// One request on a new connection; an error instead of a panic when anything goes wrong.
pub async fn try_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<Response, String> {
    let exchange = async {
        let mut stream = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let mut req =
            format!("{method} {path} HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n");
        for (n, v) in headers {
            req.push_str(&format!("{n}: {v}\r\n"));
        }
        if method == "POST" || method == "PUT" {
            req.push_str("Content-Length: 0\r\n");
        }
        req.push_str("\r\n");
        stream
            .write_all(req.as_bytes())
            .await
            .map_err(|e| format!("write: {e}"))?;
        let mut buf = Vec::new();
        loop {
            if let Some((response, _)) = parse_response(&buf, false) {
                return Ok(response);
            }
            let mut chunk = [0u8; 16 * 1024];
            let n = stream
                .read(&mut chunk)
                .await
                .map_err(|e| format!("read: {e}"))?;
            if n == 0 {
                return parse_response(&buf, true)
                    .map(|(r, _)| r)
                    .ok_or_else(|| format!("closed early: {:?}", String::from_utf8_lossy(&buf)));
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    };
    tokio::time::timeout(REQUEST_TIMEOUT, exchange)
        .await
        .map_err(|_| "timed out".to_string())?
}

/// `GET path` that must succeed at the HTTP level; panics otherwise.
pub async fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Response {
    try_request(addr, "GET", path, headers)
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

/// The backend that answered.
pub fn backend(r: &Response) -> String {
    r.header("x-backend").unwrap_or("-").to_string()
}

/// `name=value` from a `Set-Cookie` header, if any.
pub fn cookie_pair(r: &Response) -> Option<String> {
    r.header("set-cookie")
        .and_then(|c| c.split(';').next())
        .map(|c| c.trim().to_string())
}

/// A daemon builder with a plain `lb` listener routing every host to upstream `app`.
pub fn lb_builder() -> DaemonBuilder {
    DaemonBuilder::new()
        .admin()
        .extra_listener("lb", false)
        .route("{ name: app, listener: lb, upstream: app }")
}

/// `servers: [ { address: A }, ... ]` with extra keys per server (e.g. `weight: 2`).
pub fn servers_yaml(servers: &[(SocketAddr, &str)]) -> String {
    let list: Vec<String> = servers
        .iter()
        .map(|(a, extra)| {
            if extra.is_empty() {
                format!("{{ address: {a} }}")
            } else {
                format!("{{ address: {a}, {extra} }}")
            }
        })
        .collect();
    format!("    servers: [ {} ]\n", list.join(", "))
}

/// The daemon's `/status.json`.
pub async fn status(d: &Daemon) -> Value {
    let admin = d.admin.expect("admin listener");
    let r = get(admin, STATUS_PATH, &[]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    serde_json::from_slice(&r.body).expect("status.json is JSON")
}

/// The status of every server of `upstream`.
pub fn servers_of(status: &Value, upstream: &str) -> Vec<Value> {
    status["upstreams"]
        .as_array()
        .and_then(|ups| ups.iter().find(|u| u["name"] == upstream))
        .and_then(|u| u["servers"].as_array().cloned())
        .unwrap_or_default()
}

/// The status of the server at `addr`.
pub fn server_of(status: &Value, upstream: &str, addr: SocketAddr) -> Value {
    servers_of(status, upstream)
        .into_iter()
        .find(|s| s["address"] == addr.to_string())
        .unwrap_or_else(|| panic!("no server {addr} in {status}"))
}

/// Polls `/status.json` until `done` holds (or panics after `limit` with the last status).
pub async fn wait_status(
    d: &Daemon,
    limit: Duration,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + limit;
    loop {
        let s = status(d).await;
        if done(&s) {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not within {limit:?}; last status: {s:#}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Sum of in-flight requests over every server of every upstream.
pub fn total_inflight(status: &Value) -> u64 {
    status["upstreams"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|u| u["servers"].as_array().cloned().unwrap_or_default())
        .map(|s| s["inflight"].as_u64().unwrap_or(0))
        .sum()
}
