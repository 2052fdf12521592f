//! Test servers for several instances as one edge: a real `redis-server` on a loopback port that
//! can be stopped and started again on the same port, and an HTTP-01 relay standing in for the
//! address Pebble validates at: it holds validations on request, asks every instance for the token
//! directly, then lets one of them answer the CA.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::acme_env::wait_tcp;
use crate::harness::free_addr;

/// True when redis-server and redis-cli are installed (scripts/setup.sh installs them).
pub fn redis_installed() -> bool {
    ["redis-server", "redis-cli"].iter().all(|tool| {
        Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

/// A `redis-server` without persistence on a loopback port; killed when dropped.
pub struct RedisServer {
    child: Option<Child>,
    pub addr: SocketAddr,
    dir: TempDir,
}

impl RedisServer {
    pub fn start() -> Self {
        assert!(
            redis_installed(),
            "redis-server and redis-cli are needed: run scripts/setup.sh"
        );
        let mut server = Self {
            child: None,
            addr: free_addr(),
            dir: tempfile::tempdir().expect("tempdir"),
        };
        server.resume();
        server
    }

    /// Starts it again on the same port (empty: nothing is persisted).
    pub fn resume(&mut self) {
        assert!(self.child.is_none(), "already running");
        let log = std::fs::File::create(self.dir.path().join("redis.log")).expect("log");
        let mut child = Command::new("redis-server")
            .args([
                "--bind",
                "127.0.0.1",
                "--port",
                &self.addr.port().to_string(),
            ])
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::from(log.try_clone().expect("clone")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn redis-server");
        wait_tcp(self.addr, &mut child, "redis-server");
        self.child = Some(child);
    }

    /// Kills it (clients see connections refused).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn url(&self) -> String {
        format!("redis://{}", self.addr)
    }

    /// `redis-cli ARGS` against it: stdout, trimmed.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.addr.port().to_string(),
                "--raw",
            ])
            .args(args)
            .output()
            .expect("redis-cli");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The `cluster:` section for an instance named `name`.
pub fn cluster_yaml(redis: &RedisServer, prefix: &str, name: &str, extra: &str) -> String {
    format!(
        "cluster:\n  name: {name}\n  redis: {{ url: \"{}\", key_prefix: {prefix} }}\n  lock_ttl: 3s\n  sync_interval: 300ms\n{extra}",
        redis.url()
    )
}

/// One HTTP-01 validation the relay saw: the token and what each instance answered directly (the
/// CA got one of these answers, from the instances in turn).
#[derive(Debug, Clone)]
pub struct Validation {
    pub token: String,
    /// (status, body) per instance, in the order of the targets (`(0, "")` for one taken out).
    pub direct: Vec<(u16, String)>,
}

/// Stands where Pebble validates HTTP-01 (its `httpPort`).
pub struct Relay {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<Validation>>>,
    hold: tokio::sync::watch::Sender<bool>,
    /// Instances (http listeners) that may answer the CA; a killed one is taken out.
    pub targets: Arc<Mutex<Vec<Option<SocketAddr>>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Relay {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind relay");
        let addr = listener.local_addr().expect("addr");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let targets: Arc<Mutex<Vec<Option<SocketAddr>>>> = Arc::new(Mutex::new(Vec::new()));
        let (hold, held) = tokio::sync::watch::channel(false);
        let task = {
            let (seen, targets) = (seen.clone(), targets.clone());
            tokio::spawn(async move {
                let mut count = 0usize;
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        return;
                    };
                    count += 1;
                    let (seen, targets, held) = (seen.clone(), targets.clone(), held.clone());
                    tokio::spawn(relay_one(stream, count, seen, targets, held));
                }
            })
        };
        Self {
            addr,
            seen,
            hold,
            targets,
            task,
        }
    }

    /// While true, validations wait (the issuing instance is stuck mid-issuance).
    pub fn hold(&self, on: bool) {
        let _ = self.hold.send(on);
    }

    pub fn set_targets(&self, targets: &[SocketAddr]) {
        *self.targets.lock().expect("lock") = targets.iter().copied().map(Some).collect();
    }

    /// Takes instance `index` out (it was killed).
    pub fn remove_target(&self, index: usize) {
        self.targets.lock().expect("lock")[index] = None;
    }

    pub fn validations(&self) -> Vec<Validation> {
        self.seen.lock().expect("lock").clone()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn relay_one(
    mut stream: TcpStream,
    count: usize,
    seen: Arc<Mutex<Vec<Validation>>>,
    targets: Arc<Mutex<Vec<Option<SocketAddr>>>>,
    mut held: tokio::sync::watch::Receiver<bool>,
) {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&head).into_owned();
    let path = text.split_whitespace().nth(1).unwrap_or("/").to_string();
    let _ = held.wait_for(|hold| !*hold).await;
    let token = path.rsplit('/').next().unwrap_or("").to_string();
    let instances: Vec<Option<SocketAddr>> = targets.lock().expect("lock").clone();
    let mut direct = Vec::new();
    for instance in &instances {
        direct.push(match instance {
            Some(addr) => http_get(*addr, &path).await,
            None => (0, String::new()),
        });
    }
    let alive: Vec<usize> = (0..instances.len())
        .filter(|i| instances[*i].is_some())
        .collect();
    let Some(&index) = alive.get(count % alive.len().max(1)) else {
        return;
    };
    let (status, body) = direct[index].clone();
    seen.lock()
        .expect("lock")
        .push(Validation { token, direct });
    let reply = format!(
        "HTTP/1.1 {status} X\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(reply.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// A plain GET with `Connection: close`: status and body.
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let work = async {
        let mut stream = TcpStream::connect(addr).await.ok()?;
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: acme.test\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await.ok()?;
        let text = String::from_utf8_lossy(&response).into_owned();
        let status = text.split_whitespace().nth(1)?.parse().ok()?;
        let body = text
            .split_once("\r\n\r\n")
            .map_or("", |(_, b)| b)
            .to_string();
        Some((status, body))
    };
    tokio::time::timeout(Duration::from_secs(5), work)
        .await
        .ok()
        .flatten()
        .unwrap_or((0, String::new()))
}
