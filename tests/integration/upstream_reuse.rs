//! Server connections an HTTP/1 client connection keeps between its requests, through the real
//! daemon against a backend that numbers its connections: one client connection's requests
//! ride one server connection, the connection goes to the thread's idle pool when its client leaves,
//! goes quiet, or the next request picks another server, and one the server closed meanwhile is
//! never used (a POST after the server's keep-alive timeout still gets its 200), and a pooled one
//! the server closed is closed by the daemon too without waiting for a request. With several
//! worker threads, client connections spread over them and each thread reuses its own idle
//! server connections.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

use crate::backends::read_request;
use crate::balance_support::{lb_builder, servers_yaml};
use crate::client::{exchange, Request, Response};
use crate::harness::Daemon;

/// A backend that answers every request 200 with `X-Conn: N` (its connection's number, from 1)
/// and, when `idle_close` is set, closes a connection left idle that long, as uvicorn does after
/// its keep-alive timeout.
#[derive(Clone)]
struct NumberingBackend {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    requests: Arc<AtomicUsize>,
}

impl NumberingBackend {
    async fn start(idle_close: Option<Duration>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let backend = Self {
            addr: listener.local_addr().expect("addr"),
            accepted: Arc::default(),
            requests: Arc::default(),
        };
        let server = backend.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let number = server.accepted.fetch_add(1, Ordering::SeqCst) + 1;
                let requests = server.requests.clone();
                tokio::spawn(serve(stream, number, requests, idle_close));
            }
        });
        backend
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

async fn serve(
    stream: TcpStream,
    number: usize,
    requests: Arc<AtomicUsize>,
    idle_close: Option<Duration>,
) {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    loop {
        let next = read_request(&mut reader);
        let request = match idle_close {
            Some(idle) => match tokio::time::timeout(idle, next).await {
                Ok(request) => request,
                Err(_) => return,
            },
            None => next.await,
        };
        let Ok(Some(request)) = request else {
            return;
        };
        requests.fetch_add(1, Ordering::SeqCst);
        let body = format!("{} {} on {number}\n", request.method, request.target);
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nX-Conn: {number}\r\n\r\n",
            body.len()
        );
        if write.write_all(head.as_bytes()).await.is_err()
            || write.write_all(body.as_bytes()).await.is_err()
        {
            return;
        }
    }
}

/// The daemon with one upstream, `backend`, and one worker thread (whose pool every client
/// connection shares).
async fn daemon_for(backend: &NumberingBackend) -> Daemon {
    lb_builder()
        .workers(1)
        .upstream_yaml("app", &servers_yaml(&[(backend.addr, "")]))
        .start()
        .await
}

fn conn(response: &Response) -> String {
    assert_eq!(response.status, 200, "{}", response.text());
    response.header("x-conn").expect("X-Conn").to_string()
}

fn post(body: &str) -> Request {
    let mut request = Request::post("lb.test", "/submit");
    request.body = body.as_bytes().to_vec();
    request
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_client_connection_rides_one_server_connection() {
    let backend = NumberingBackend::start(None).await;
    let d = daemon_for(&backend).await;
    let mut client = TcpStream::connect(d.extra("lb")).await.expect("connect");
    let first = conn(&exchange(&mut client, &Request::get("lb.test", "/a")).await);
    for i in 0..4 {
        let response = exchange(&mut client, &post(&format!("body {i}"))).await;
        assert_eq!(conn(&response), first);
        let response = exchange(&mut client, &Request::get("lb.test", "/b")).await;
        assert_eq!(conn(&response), first);
    }
    assert_eq!(backend.accepted(), 1);
    assert_eq!(backend.requests(), 9);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kept_connection_goes_to_the_pool_when_its_client_leaves() {
    let backend = NumberingBackend::start(None).await;
    let d = daemon_for(&backend).await;
    let mut first = TcpStream::connect(d.extra("lb")).await.expect("connect");
    let used = conn(&exchange(&mut first, &Request::get("lb.test", "/a")).await);
    drop(first);
    // Time for the daemon to see the client go and pool what it kept.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut second = TcpStream::connect(d.extra("lb")).await.expect("connect");
    let again = conn(&exchange(&mut second, &Request::get("lb.test", "/b")).await);
    assert_eq!(
        again, used,
        "the second client rides the first one's server connection"
    );
    assert_eq!(backend.accepted(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_client_leaves_its_server_connection_to_others() {
    let backend = NumberingBackend::start(None).await;
    let d = daemon_for(&backend).await;
    let mut quiet = TcpStream::connect(d.extra("lb")).await.expect("connect");
    let used = conn(&exchange(&mut quiet, &Request::get("lb.test", "/a")).await);
    // Still connected, but quiet for longer than a burst (a second).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut other = TcpStream::connect(d.extra("lb")).await.expect("connect");
    let again = conn(&exchange(&mut other, &Request::get("lb.test", "/b")).await);
    assert_eq!(
        again, used,
        "the quiet client's server connection went to the pool"
    );
    // And back: the first client is served on it again once the other one has gone quiet.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let later = conn(&exchange(&mut quiet, &Request::get("lb.test", "/c")).await);
    assert_eq!(later, used);
    assert_eq!(backend.accepted(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_connection_the_server_closed_is_not_used() {
    let backend = NumberingBackend::start(Some(Duration::from_millis(100))).await;
    let d = daemon_for(&backend).await;
    let mut client = TcpStream::connect(d.extra("lb")).await.expect("connect");
    let before = conn(&exchange(&mut client, &post("one")).await);
    // The server's keep-alive timeout passes while the client is idle.
    tokio::time::sleep(Duration::from_millis(500)).await;
    // A POST is never retried once sent: it succeeds only if it went on a live connection.
    let after = conn(&exchange(&mut client, &post("two")).await);
    assert_ne!(before, after);
    assert_eq!(backend.accepted(), 2);
    assert_eq!(backend.requests(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alternating_servers_trade_connections_through_the_pool() {
    let (a, b) = (
        NumberingBackend::start(None).await,
        NumberingBackend::start(None).await,
    );
    let servers = servers_yaml(&[(a.addr, ""), (b.addr, "")]);
    let d = lb_builder()
        .workers(1)
        .upstream_yaml("app", &format!("{servers}    balance: round_robin\n"))
        .start()
        .await;
    let mut client = TcpStream::connect(d.extra("lb")).await.expect("connect");
    for i in 0..8 {
        let response = exchange(&mut client, &Request::get("lb.test", &format!("/{i}"))).await;
        assert_eq!(conn(&response), "1");
    }
    // Each request went to the other server: its connection came back from the pool.
    assert_eq!((a.requests(), b.requests()), (4, 4));
    assert_eq!((a.accepted(), b.accepted()), (1, 1));
}

/// CPU ticks (user + system) each thread of `pid` named `name` has used so far.
fn thread_ticks(pid: u32, name: &str) -> Vec<u64> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    let mut ticks = Vec::new();
    for task in tasks.flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.trim_end() != name {
            continue;
        }
        let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
        // Fields after the parenthesised name: state is the 3rd field, utime the 14th, stime the 15th.
        let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
        let fields: Vec<&str> = after.split_whitespace().collect();
        let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<u64>().ok());
        ticks.push(field(14).unwrap_or(0) + field(15).unwrap_or(0));
    }
    ticks
}

/// Keep-alive requests on `clients` connections at once, `each` per connection; every answer 200.
async fn load(addr: SocketAddr, clients: usize, each: usize) {
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            tokio::spawn(async move {
                let mut client = TcpStream::connect(addr).await.expect("connect");
                for i in 0..each {
                    let path = format!("/{c}/{i}");
                    conn(&exchange(&mut client, &Request::get("lb.test", &path)).await);
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("client");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_threads_share_the_load_and_the_pool() {
    let backend = NumberingBackend::start(None).await;
    let d = lb_builder()
        .workers(4)
        .upstream_yaml("app", &servers_yaml(&[(backend.addr, "")]))
        .start()
        .await;
    let (clients, each) = (64, 20);
    load(d.extra("lb"), clients, each).await;
    assert_eq!(backend.requests(), clients * each);
    let opened = backend.accepted();
    assert!(
        opened <= clients,
        "each client connection rides one server connection: {opened} opened"
    );
    // Each client connection was served by one of the listener's worker threads, picked at
    // accept: with 64 connections, more than one thread did work.
    let ticks = thread_ticks(d.pid(), "listener lb");
    assert_eq!(ticks.len(), 4, "one thread per worker: {ticks:?}");
    let busy = ticks.iter().filter(|&&t| t > 0).count();
    assert!(busy >= 2, "connections spread over the workers: {ticks:?}");
    // The clients leave and their server connections go to the idle pool of the worker thread
    // that served them (every thread served some of the 64). New clients, one at a time and each
    // accepted on any thread, ride them instead of opening new ones.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for _ in 0..clients {
        load(d.extra("lb"), 1, 1).await;
    }
    assert_eq!(backend.requests(), clients * (each + 1));
    assert_eq!(backend.accepted(), opened, "pooled connections were reused");
}

/// Descriptors the process `pid` holds.
fn descriptors(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |dir| dir.count())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pooled_connections_the_server_closed_are_closed_without_a_request() {
    let backend = NumberingBackend::start(Some(Duration::from_secs(1))).await;
    let d = daemon_for(&backend).await;
    // A first round settles whatever the daemon opens on its first requests.
    load(d.extra("lb"), 1, 1).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let settled = descriptors(d.pid());
    load(d.extra("lb"), 5, 2).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The clients have gone; their five server connections wait in the pool.
    assert_eq!(backend.accepted(), 6);
    assert_eq!(descriptors(d.pid()), settled + 5);
    // The server closes them after a second; the sweeper closes the daemon's side.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(descriptors(d.pid()), settled);
    // And the next request opens a fresh one.
    load(d.extra("lb"), 1, 1).await;
    assert_eq!(backend.accepted(), 7);
}
