//! The system under test: simulated GPU nodes started in-process and the real `ferrogate` daemon
//! (the release binary cargo builds for benches) run from a generated YAML on loopback ports, with
//! reload (rewrite + SIGHUP) and the nodes' prefix-cache counters.

use std::fs::File;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ferrogate_sim::{SimConfig, SimHandle};

/// The daemon cargo built for this bench (the bench profile: optimized).
pub const BIN: &str = env!("CARGO_BIN_EXE_ferrogate");
/// How long the daemon may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// How the inference upstream balances.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub balance: &'static str,
    pub affinity: bool,
}

impl Policy {
    pub fn label(&self) -> String {
        if self.affinity && self.balance != "cache_aware" {
            format!("{} + affinity", self.balance)
        } else {
            self.balance.to_string()
        }
    }
}

/// Upstream admission settings.
#[derive(Debug, Clone, Copy)]
pub struct Admission {
    pub max_inflight: usize,
    pub queue_size: usize,
    pub queue_timeout: Duration,
}

/// Free loopback port (bound, read, released).
pub fn free_addr() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local addr")
}

/// What the generated config says, apart from the server list.
struct Settings {
    state_dir: PathBuf,
    lb: SocketAddr,
    admin: SocketAddr,
    policy: Policy,
    admission: Admission,
    /// Each server's KV event endpoints `(PUB, replay)`, by position, when the daemon is to
    /// subscribe to them.
    kv_events: Vec<(String, Option<String>)>,
}

/// A server's `inference: { kv_events: …, kv_events_replay: … }` entry.
fn kv_events_yaml(events: &(String, Option<String>)) -> String {
    match &events.1 {
        Some(replay) => format!(
            ", inference: {{ kv_events: \"{}\", kv_events_replay: \"{replay}\" }}",
            events.0
        ),
        None => format!(", inference: {{ kv_events: \"{}\" }}", events.0),
    }
}

/// A whole config whose servers name KV event endpoints, to ask `ferrogate check` whether the
/// daemon takes them.
pub fn kv_events_probe_yaml(
    state_dir: &std::path::Path,
    events: &[(String, Option<String>)],
) -> String {
    let settings = Settings {
        state_dir: state_dir.to_path_buf(),
        lb: "127.0.0.1:18000".parse().expect("literal address"),
        admin: "127.0.0.1:18001".parse().expect("literal address"),
        policy: Policy {
            balance: "cache_aware",
            affinity: true,
        },
        admission: Admission {
            max_inflight: 16,
            queue_size: 16,
            queue_timeout: Duration::from_secs(1),
        },
        kv_events: events.to_vec(),
    };
    let servers: Vec<SocketAddr> = (0..events.len())
        .map(|i| SocketAddr::from(([127, 0, 0, 1], 19000 + i as u16)))
        .collect();
    settings.yaml(&servers)
}

impl Settings {
    fn yaml(&self, servers: &[SocketAddr]) -> String {
        let list: Vec<String> = servers
            .iter()
            .enumerate()
            .map(|(i, a)| {
                format!(
                    "{{ address: {a}, max_inflight: {}{} }}",
                    self.admission.max_inflight,
                    self.kv_events
                        .get(i)
                        .map(kv_events_yaml)
                        .unwrap_or_default()
                )
            })
            .collect();
        format!(
            "state_dir: {state}\n\
             workers: 1\n\
             listeners:\n  extra:\n    - {{ name: lb, address: {lb}, tls: false }}\n\
             admin: {{ listen: {admin} }}\n\
             routes:\n  - {{ name: gpu, listener: lb, upstream: gpu }}\n\
             upstreams:\n  gpu:\n    servers: [ {list} ]\n    balance: {balance}\n\
             \x20   retries: 2\n\
             \x20   queue: {{ size: {qsize}, timeout: {qtimeout}ms }}\n\
             \x20   timeouts: {{ connect: 1s, read: 60s }}\n\
             \x20   inference: {{ engine: vllm, models: [{model}], refresh: 250ms, \
             signal_max_age: 2s, affinity: {affinity} }}\n",
            state = self.state_dir.display(),
            lb = self.lb,
            admin = self.admin,
            list = list.join(", "),
            balance = self.policy.balance,
            qsize = self.admission.queue_size,
            qtimeout = self.admission.queue_timeout.as_millis(),
            model = super::workload::MODEL,
            affinity = self.policy.affinity,
        )
    }
}

/// Sends one raw HTTP/1.1 `request` (which asks for `connection: close`) to `addr` and returns
/// the whole answer, head and body; reads time out after `limit`.
pub fn http_call(addr: SocketAddr, request: &str, limit: Duration) -> std::io::Result<String> {
    use std::io::{Read, Write};
    let mut answer = String::new();
    let mut s = std::net::TcpStream::connect(addr)?;
    s.set_read_timeout(Some(limit))?;
    s.write_all(request.as_bytes())?;
    s.read_to_string(&mut answer)?;
    Ok(answer)
}

/// The sum of every series of the counter or gauge `name` in the daemon's Prometheus text at
/// `admin`'s `/metrics`; `None` when it cannot be read or has no such series.
pub fn metric_sum(admin: SocketAddr, name: &str) -> Option<f64> {
    let request = format!("GET /metrics HTTP/1.1\r\nhost: {admin}\r\nconnection: close\r\n\r\n");
    let text = http_call(admin, &request, Duration::from_secs(5)).ok()?;
    let mut found = false;
    let mut sum = 0.0;
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        if !(rest.starts_with('{') || rest.starts_with(' ')) {
            continue;
        }
        if let Some(v) = rest.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) {
            sum += v;
            found = true;
        }
    }
    found.then_some(sum)
}

/// A running daemon, killed when dropped.
pub struct Daemon {
    child: Child,
    pub lb: SocketAddr,
    config: PathBuf,
    settings: Settings,
    dir: tempfile::TempDir,
}

impl Daemon {
    pub async fn start(servers: &[SocketAddr], policy: Policy, admission: Admission) -> Daemon {
        Daemon::start_with_kv_events(servers, policy, admission, &[]).await
    }

    /// A daemon whose servers name their KV event endpoints (`inference: { kv_events: … }`).
    pub async fn start_with_kv_events(
        servers: &[SocketAddr],
        policy: Policy,
        admission: Admission,
        kv_events: &[(String, Option<String>)],
    ) -> Daemon {
        let dir = tempfile::tempdir().expect("temp dir");
        let settings = Settings {
            state_dir: dir.path().join("state"),
            lb: free_addr(),
            admin: free_addr(),
            policy,
            admission,
            kv_events: kv_events.to_vec(),
        };
        let config = dir.path().join("ferrogate.yaml");
        std::fs::write(&config, settings.yaml(servers)).expect("write config");
        let log = File::create(dir.path().join("daemon.log")).expect("daemon log");
        let child = Command::new(BIN)
            .arg("run")
            .arg("--config")
            .arg(&config)
            .env("FERROGATE_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().expect("clone log")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn ferrogate (built by cargo bench)");
        let mut daemon = Daemon {
            child,
            lb: settings.lb,
            config,
            settings,
            dir,
        };
        daemon.wait_ready().await;
        daemon
    }

    /// The admin listener (`/metrics`, `/status`).
    pub fn admin(&self) -> SocketAddr {
        self.settings.admin
    }

    /// Rewrites the config with `servers` and asks the daemon to reload (SIGHUP).
    pub fn reload(&self, servers: &[SocketAddr]) {
        std::fs::write(&self.config, self.settings.yaml(servers)).expect("rewrite config");
        let status = Command::new("kill")
            .arg("-HUP")
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill -HUP");
        assert!(status.success(), "kill -HUP failed");
    }

    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                let log = std::fs::read_to_string(self.dir.path().join("daemon.log"));
                panic!("ferrogate exited at start-up ({status}): {log:?}");
            }
            let lb = tokio::net::TcpStream::connect(self.lb).await.is_ok();
            let admin = tokio::net::TcpStream::connect(self.settings.admin)
                .await
                .is_ok();
            if lb && admin {
                return;
            }
            assert!(Instant::now() < deadline, "ferrogate did not start in time");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The simulated GPU node settings of a run.
#[derive(Debug, Clone)]
pub struct NodeShape {
    pub max_num_seqs: usize,
    pub cache_blocks: usize,
    pub prefill_tokens_per_sec: f64,
    pub decode_ms: f64,
}

/// The simulator settings of a node of `shape`.
pub fn node_config(shape: &NodeShape) -> SimConfig {
    SimConfig {
        models: vec![super::workload::MODEL.to_string()],
        max_num_seqs: shape.max_num_seqs,
        max_waiting: None,
        cache_blocks: shape.cache_blocks,
        prefill_tokens_per_sec: shape.prefill_tokens_per_sec,
        decode_ms: shape.decode_ms,
        ..SimConfig::default()
    }
}

pub async fn start_node(shape: &NodeShape) -> SimHandle {
    ferrogate_sim::start(node_config(shape))
        .await
        .expect("start simulator")
}
