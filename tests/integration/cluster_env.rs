//! Test servers for several instances as one edge: a real `redis-server` on a loopback port that
//! can be stopped and started again on the same port (picked ports, again fresh ones when one is
//! taken: redis cannot bind port 0 and report it), and an HTTP-01 relay standing in for the
//! address Pebble validates at: it holds validations on request, asks every instance for the token
//! directly, then lets one of them answer the CA.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::harness::ports::{start_on_picked_ports, wait_holding, PortTaken, START_ATTEMPTS};
use crate::harness::sockets::Bound;

/// What redis-server logs before it exits when an address is taken.
const REDIS_ADDRESS_TAKEN: &str = "Address already in use";
/// A cluster node also listens on its port + 10000 (the cluster bus).
const CLUSTER_BUS_OFFSET: u16 = 10_000;

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
        Self::start_with(&[])
    }

    /// Starts one with `extra` arguments on a picked port (fresh ones while one is taken).
    fn start_with(extra: &[&str]) -> Self {
        assert!(
            redis_installed(),
            "redis-server and redis-cli are needed: run scripts/setup.sh"
        );
        start_on_picked_ports("redis-server", 1, |picked| {
            let mut server = Self {
                child: None,
                addr: picked[0],
                dir: tempfile::tempdir().expect("tempdir"),
            };
            server.try_resume_with(extra)?;
            Ok(server)
        })
    }

    /// Starts it again on the same port (empty: nothing is persisted). The port cannot change
    /// (the daemons know it), so a taken one is tried again a few times.
    pub fn resume(&mut self) {
        let mut taken = Vec::new();
        for _ in 0..START_ATTEMPTS {
            match self.try_resume_with(&[]) {
                Ok(()) => return,
                Err(PortTaken(said)) => taken.push(said),
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!(
            "redis-server: {} stayed taken:\n{}",
            self.addr,
            taken.join("\n")
        );
    }

    fn try_resume_with(&mut self, extra: &[&str]) -> Result<(), PortTaken> {
        assert!(self.child.is_none(), "already running");
        let mut sockets = vec![Bound::Tcp(self.addr)];
        if extra.contains(&"--cluster-enabled") {
            let Some(bus) = self.addr.port().checked_add(CLUSTER_BUS_OFFSET) else {
                return Err(PortTaken(format!(
                    "redis-server: {} leaves no room for its cluster bus port",
                    self.addr
                )));
            };
            sockets.push(Bound::Tcp(SocketAddr::new(self.addr.ip(), bus)));
        }
        let log_path = self.dir.path().join("redis.log");
        let log = std::fs::File::create(&log_path).expect("log");
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
            .args(extra)
            .stdout(Stdio::from(log.try_clone().expect("clone")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn redis-server");
        wait_holding(
            &mut child,
            "redis-server",
            &sockets,
            &log_path,
            &[REDIS_ADDRESS_TAKEN],
        )?;
        self.child = Some(child);
        Ok(())
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

/// Three `redis-server` nodes in cluster mode (no replicas) on loopback ports, slots spread by
/// `redis-cli --cluster create`; killed when dropped.
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
}

impl RedisCluster {
    pub fn start() -> Self {
        let nodes: Vec<RedisServer> = (0..3)
            .map(|_| {
                RedisServer::start_with(&[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                ])
            })
            .collect();
        let addresses: Vec<String> = nodes.iter().map(|n| n.addr.to_string()).collect();
        let out = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addresses)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("redis-cli --cluster create");
        assert!(
            out.status.success(),
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        while !nodes
            .iter()
            .all(|n| n.cli(&["CLUSTER", "INFO"]).contains("cluster_state:ok"))
        {
            assert!(
                std::time::Instant::now() < deadline,
                "the Redis Cluster did not form"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Self { nodes }
    }

    /// `nodes: [...]` for the `cluster.redis` section.
    pub fn nodes_yaml(&self) -> String {
        let urls: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("\"{}\"", n.url()))
            .collect();
        format!("[{}]", urls.join(", "))
    }

    /// `redis-cli -c ARGS` (following redirections) through the first node.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args([
                "-c",
                "-h",
                "127.0.0.1",
                "-p",
                &self.nodes[0].addr.port().to_string(),
                "--raw",
            ])
            .args(args)
            .output()
            .expect("redis-cli");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

/// A master, one replica and one Sentinel watching them (`mymaster`, quorum 1); killed when
/// dropped.
pub struct RedisSentinel {
    pub master: RedisServer,
    pub replica: RedisServer,
    pub sentinel: RedisServer,
}

impl RedisSentinel {
    pub fn start() -> Self {
        let master = RedisServer::start();
        let master_port = master.addr.port().to_string();
        let replica = RedisServer::start_with(&["--replicaof", "127.0.0.1", &master_port]);
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        while !replica
            .cli(&["INFO", "replication"])
            .contains("master_link_status:up")
        {
            assert!(
                std::time::Instant::now() < deadline,
                "the replica did not sync"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let sentinel = start_on_picked_ports("redis sentinel", 1, |picked| {
            let mut sentinel = RedisServer {
                child: None,
                addr: picked[0],
                dir: tempfile::tempdir().expect("tempdir"),
            };
            let conf = sentinel.dir.path().join("sentinel.conf");
            std::fs::write(
                &conf,
                format!(
                    "port {}\nbind 127.0.0.1\nsentinel monitor mymaster 127.0.0.1 {master_port} 1\nsentinel down-after-milliseconds mymaster 1000\nsentinel failover-timeout mymaster 5000\n",
                    sentinel.addr.port()
                ),
            )
            .expect("sentinel.conf");
            let log_path = sentinel.dir.path().join("sentinel.log");
            let log = std::fs::File::create(&log_path).expect("log");
            let mut child = Command::new("redis-server")
                .arg(&conf)
                .arg("--sentinel")
                .stdout(Stdio::from(log.try_clone().expect("clone")))
                .stderr(Stdio::from(log))
                .spawn()
                .expect("spawn redis-server --sentinel");
            wait_holding(
                &mut child,
                "redis sentinel",
                &[Bound::Tcp(sentinel.addr)],
                &log_path,
                &[REDIS_ADDRESS_TAKEN],
            )?;
            sentinel.child = Some(child);
            Ok(sentinel)
        });
        Self {
            master,
            replica,
            sentinel,
        }
    }

    /// The port of the master the Sentinel names now.
    pub fn master_port(&self) -> String {
        self.sentinel
            .cli(&["SENTINEL", "get-master-addr-by-name", "mymaster"])
            .lines()
            .nth(1)
            .unwrap_or("")
            .to_string()
    }
}
