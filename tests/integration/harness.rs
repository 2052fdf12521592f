//! The harness: self-signed certificates written as PEM, and a `DaemonBuilder` that writes a
//! config into a temp dir and runs the real `ferrogate` binary until the `Daemon` is dropped
//! (printing its log when the test failed).
//!
//! Ports. Tests run in parallel, so a port chosen in advance and left unbound may be taken by
//! the time its server binds it. The rule:
//! - Anything a test starts in-process (backends, simulators, relays, sinks) binds
//!   `127.0.0.1:0`, keeps the bound listener and reports the address it got.
//! - A port that must stay closed is a `backends::ClosedPort` (bound, never listening).
//! - Only a server that must be told its ports gets picked ones, through [`ports`]: the daemon
//!   (`DaemonBuilder::start`) and outside programs (`ports::start_on_picked_ports`). It counts
//!   as up once it alone holds its sockets ([`sockets`]), and is started again on fresh ports
//!   when it reports one taken. There is no free-port function to call outside those loops.
//! - A server restarted on its own address (redis `resume`, `Replica::restart`, the binary
//!   upgrade handing its sockets over) keeps that address; a bind is retried there a few times.

pub mod ports;
pub mod sockets;
mod start;
#[cfg(test)]
mod tests;

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use ports::pick_addrs;

/// The daemon binary cargo built for this test run.
pub const BIN: &str = env!("CARGO_BIN_EXE_ferrogate");

/// How long a daemon may take to hold every listener.
pub const DEFAULT_START_TIMEOUT: Duration = Duration::from_secs(20);

/// Upstream timeouts for ordinary tests: fail fast, but never flake on a slow CI machine.
pub const DEFAULT_TIMEOUTS: &str = "{ connect: 1s, read: 5s }";

/// A self-signed certificate and its key, written as PEM files.
#[derive(Debug, Clone)]
pub struct CertFiles {
    pub name: String,
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The leaf certificate in DER, to compare with what a TLS client was shown.
    pub der: Vec<u8>,
}

/// Makes a self-signed certificate for `sans` with the common name `ferrogate-test-NAME` and
/// writes `NAME.pem` / `NAME.key` into `dir`.
pub fn write_cert(dir: &Path, name: &str, sans: &[&str]) -> CertFiles {
    let names: Vec<String> = sans.iter().map(|s| s.to_string()).collect();
    let mut params = rcgen::CertificateParams::new(names).expect("certificate params");
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(rcgen::DnType::CommonName, format!("ferrogate-test-{name}"));
    params.distinguished_name = dn;
    let key = rcgen::KeyPair::generate().expect("generate key");
    let cert = params.self_signed(&key).expect("self-sign");
    let cert_path = dir.join(format!("{name}.pem"));
    let key_path = dir.join(format!("{name}.key"));
    std::fs::write(&cert_path, cert.pem()).expect("write cert");
    std::fs::write(&key_path, key.serialize_pem()).expect("write key");
    CertFiles {
        name: name.to_string(),
        cert: cert_path,
        key: key_path,
        der: cert.der().to_vec(),
    }
}

/// Runs `ferrogate check --config PATH` and returns its output.
pub fn run_check(path: &Path) -> Output {
    Command::new(BIN)
        .arg("check")
        .arg("--config")
        .arg(path)
        .output()
        .expect("run ferrogate check")
}

/// Builds a config for the daemon, one section at a time. Routes and upstream timeouts are YAML
/// flow mappings, written exactly as a user would.
pub struct DaemonBuilder {
    dir: TempDir,
    http: SocketAddr,
    https: SocketAddr,
    /// Further keys of `listeners.http` / `listeners.https` (written as mappings when set).
    http_keys: String,
    https_keys: String,
    /// name, address, tls, further keys of its flow mapping (`, key: value`).
    extra: Vec<(String, SocketAddr, bool, String)>,
    hsts: Option<String>,
    certs: Vec<CertFiles>,
    routes: Vec<String>,
    upstreams: Vec<String>,
    /// The admin listener and further keys of its flow mapping (`, key: value`).
    admin: Option<(SocketAddr, String)>,
    /// Extra top-level YAML appended verbatim (e.g. `shutdown: { grace_period: 5s }`).
    extra_yaml: String,
    /// ACME certificate entries (flow mappings) after the file certificates.
    acme_certs: Vec<String>,
    /// A state dir outside the temp dir (to survive a restart).
    state_dir: Option<PathBuf>,
    /// Lay the config out as a Kubernetes ConfigMap volume does (`..data` symlink swaps).
    configmap: bool,
    env: Vec<(String, String)>,
    /// Worker threads per listener: 1, or `FERROGATE_TEST_WORKERS`, unless a test asks.
    workers: usize,
}

impl Default for DaemonBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl DaemonBuilder {
    /// Listener addresses are picked here (the YAML is complete before `start`) and picked
    /// again by `start` when one turns out taken.
    pub fn new() -> Self {
        let picked = pick_addrs(2);
        Self {
            dir: tempfile::tempdir().expect("tempdir"),
            http: picked[0],
            https: picked[1],
            http_keys: String::new(),
            https_keys: String::new(),
            extra: Vec::new(),
            hsts: None,
            certs: Vec::new(),
            routes: Vec::new(),
            upstreams: Vec::new(),
            admin: None,
            extra_yaml: String::new(),
            acme_certs: Vec::new(),
            state_dir: None,
            configmap: false,
            env: Vec::new(),
            workers: std::env::var("FERROGATE_TEST_WORKERS")
                .ok()
                .and_then(|n| n.parse().ok())
                .unwrap_or(1),
        }
    }

    /// Adds the admin listener on a loopback port.
    pub fn admin(self) -> Self {
        self.admin_with("")
    }

    /// Adds the admin listener with more keys, e.g. `allow: [10.0.0.0/8]`.
    pub fn admin_with(mut self, keys: &str) -> Self {
        let keys = if keys.is_empty() {
            String::new()
        } else {
            format!(", {keys}")
        };
        self.admin = Some((pick_addrs(1)[0], keys));
        self
    }

    /// Adds an upstream written as raw YAML: `body` is the mapping under `upstreams.NAME`, each
    /// line indented by four spaces (e.g. `    servers: [...]\n    balance: p2c\n`).
    pub fn upstream_yaml(mut self, name: &str, body: &str) -> Self {
        self.upstreams.push(format!("  {name}:\n{body}"));
        self
    }

    /// Adds a `tls.certificates` entry written as a flow mapping, e.g.
    /// `{ name: a, domains: [a.test], acme: { challenge: http-01 } }`.
    pub fn acme_certificate(mut self, flow_mapping: &str) -> Self {
        self.acme_certs.push(flow_mapping.to_string());
        self
    }

    /// Uses this state dir instead of one inside the temp dir.
    pub fn state_dir(mut self, dir: &Path) -> Self {
        self.state_dir = Some(dir.to_path_buf());
        self
    }

    /// Appends top-level YAML verbatim.
    pub fn yaml(mut self, text: &str) -> Self {
        self.extra_yaml.push_str(text);
        if !text.ends_with('\n') {
            self.extra_yaml.push('\n');
        }
        self
    }

    /// Writes the config as a ConfigMap volume: `ferrogate.yaml -> ..data/ferrogate.yaml`,
    /// `..data -> ..v1`.
    pub fn configmap_layout(mut self) -> Self {
        self.configmap = true;
        self
    }

    /// Runs each listener on `n` worker threads.
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = n;
        self
    }

    /// Sets an environment variable for the daemon.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    /// Writes `listeners.http` as a mapping with these keys, e.g. `proxy_protocol: true, ...`.
    pub fn http_listener_with(mut self, keys: &str) -> Self {
        self.http_keys = keys.to_string();
        self
    }

    /// Writes `listeners.https` as a mapping with these keys.
    pub fn https_listener_with(mut self, keys: &str) -> Self {
        self.https_keys = keys.to_string();
        self
    }

    /// Adds an entry to `listeners.extra`.
    pub fn extra_listener(mut self, name: &str, tls: bool) -> Self {
        self.extra
            .push((name.to_string(), pick_addrs(1)[0], tls, String::new()));
        self
    }

    /// Adds an entry to `listeners.extra` with more keys, e.g. `proxy_protocol: true`.
    pub fn extra_listener_with(mut self, name: &str, tls: bool, keys: &str) -> Self {
        self.extra
            .push((name.to_string(), pick_addrs(1)[0], tls, format!(", {keys}")));
        self
    }

    /// Sets `tls.hsts` (a duration such as `1y`).
    pub fn hsts(mut self, duration: &str) -> Self {
        self.hsts = Some(duration.to_string());
        self
    }

    /// Generates a certificate for `sans` and adds it to `tls.certificates` (the first added is
    /// the default certificate).
    pub fn certificate(mut self, name: &str, sans: &[&str]) -> Self {
        let files = write_cert(self.dir.path(), name, sans);
        self.certs.push(files);
        self
    }

    /// Adds a route, e.g. `{ name: chat, hosts: [chat.test], upstream: a }`.
    pub fn route(mut self, flow_mapping: &str) -> Self {
        self.routes.push(flow_mapping.to_string());
        self
    }

    /// Adds an upstream with these servers and a `timeouts` flow mapping.
    pub fn upstream(mut self, name: &str, servers: &[SocketAddr], timeouts: &str) -> Self {
        let list: Vec<String> = servers
            .iter()
            .map(|a| format!("{{ address: {a} }}"))
            .collect();
        self.upstreams.push(format!(
            "  {name}:\n    servers: [ {} ]\n    timeouts: {timeouts}\n",
            list.join(", ")
        ));
        self
    }

    /// The YAML this builder will write.
    pub fn config_yaml(&self) -> String {
        let mut y = String::new();
        let state = self
            .state_dir
            .clone()
            .unwrap_or_else(|| self.dir.path().join("state"));
        writeln!(y, "state_dir: {}", state.display()).expect("fmt");
        writeln!(y, "workers: {}", self.workers).expect("fmt");
        writeln!(y, "listeners:").expect("fmt");
        for (name, addr, keys) in [
            ("http", self.http, &self.http_keys),
            ("https", self.https, &self.https_keys),
        ] {
            if keys.is_empty() {
                writeln!(y, "  {name}: {addr}").expect("fmt");
            } else {
                writeln!(y, "  {name}: {{ address: {addr}, {keys} }}").expect("fmt");
            }
        }
        if !self.extra.is_empty() {
            writeln!(y, "  extra:").expect("fmt");
            for (name, addr, tls, keys) in &self.extra {
                writeln!(
                    y,
                    "    - {{ name: {name}, address: {addr}, tls: {tls}{keys} }}"
                )
                .expect("fmt");
            }
        }
        writeln!(y, "tls:").expect("fmt");
        if let Some(hsts) = &self.hsts {
            writeln!(y, "  hsts: {hsts}").expect("fmt");
        }
        writeln!(y, "  certificates:").expect("fmt");
        for c in &self.certs {
            writeln!(
                y,
                "    - {{ name: {}, cert: {}, key: {} }}",
                c.name,
                c.cert.display(),
                c.key.display()
            )
            .expect("fmt");
        }
        for c in &self.acme_certs {
            writeln!(y, "    - {c}").expect("fmt");
        }
        writeln!(y, "routes:").expect("fmt");
        for r in &self.routes {
            writeln!(y, "  - {r}").expect("fmt");
        }
        writeln!(y, "upstreams:").expect("fmt");
        for u in &self.upstreams {
            y.push_str(u);
        }
        if let Some((admin, keys)) = &self.admin {
            writeln!(y, "admin: {{ listen: {admin}{keys} }}").expect("fmt");
        }
        y.push_str(&self.extra_yaml);
        y
    }

    /// Writes `ferrogate.yaml` into the temp dir (adding a `localhost` certificate when none was
    /// added) and returns its path.
    pub fn write_config(&mut self) -> PathBuf {
        if self.certs.is_empty() {
            let files = write_cert(self.dir.path(), "default", &["localhost"]);
            self.certs.push(files);
        }
        let config_path = self.dir.path().join("ferrogate.yaml");
        // A start attempt that lost a port leaves the previous file (or symlink) behind.
        let _ = std::fs::remove_file(&config_path);
        if self.configmap {
            configmap_swap(self.dir.path(), 1, &self.config_yaml());
            std::os::unix::fs::symlink("..data/ferrogate.yaml", &config_path)
                .expect("symlink ferrogate.yaml");
        } else {
            std::fs::write(&config_path, self.config_yaml()).expect("write config");
        }
        config_path
    }
}

/// A running `ferrogate run`; killed when dropped.
pub struct Daemon {
    child: Child,
    pub http: SocketAddr,
    pub https: SocketAddr,
    extra: Vec<(String, SocketAddr)>,
    certs: Vec<CertFiles>,
    config_yaml: String,
    log_path: PathBuf,
    config_path: PathBuf,
    /// The admin listener, when the builder added one.
    pub admin: Option<SocketAddr>,
    /// Processes of start attempts killed because a listener address was taken (they may have
    /// sent a notification or a request before they were).
    pub discarded_pids: Vec<u32>,
    configmap_version: u32,
    /// Holds the config, certificates, state and log; removed after the process is gone.
    _dir: TempDir,
}

impl Daemon {
    /// The address of an extra listener.
    pub fn extra(&self, name: &str) -> SocketAddr {
        self.extra
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, a)| *a)
            .unwrap_or_else(|| panic!("no extra listener {name}"))
    }

    /// The certificate added under this name.
    pub fn cert(&self, name: &str) -> &CertFiles {
        self.certs
            .iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("no certificate {name}"))
    }

    /// The configuration file the daemon runs from.
    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// The YAML the daemon started with.
    pub fn initial_yaml(&self) -> &str {
        &self.config_yaml
    }

    /// The temp dir holding config, state and log.
    pub fn dir(&self) -> &Path {
        self._dir.path()
    }

    /// The daemon's process id (the one this harness started).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal by name (`HUP`, `TERM`, `USR2`, ...) to the daemon.
    pub fn signal(&self, name: &str) {
        send_signal(self.child.id(), name);
    }

    /// Waits up to `limit` for the daemon to exit; its status when it did.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Replaces the configuration the way an operator's tools do: an atomic rename over the
    /// file, or for a ConfigMap layout a new version directory and a `..data` symlink swap.
    pub fn replace_config(&mut self, yaml: &str) {
        if std::fs::symlink_metadata(self.dir().join("..data")).is_ok() {
            self.configmap_version += 1;
            configmap_swap(self.dir(), self.configmap_version, yaml);
        } else {
            let tmp = self.dir().join(".ferrogate.yaml.tmp");
            std::fs::write(&tmp, yaml).expect("write config");
            std::fs::rename(&tmp, &self.config_path).expect("rename config");
        }
    }

    /// Everything the daemon wrote to stdout/stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "---- ferrogate config ----\n{}---- ferrogate log ({}) ----\n{}---- end of ferrogate log ----",
                self.config_yaml,
                self.log_path.display(),
                self.log()
            );
        }
    }
}

/// Sends a signal by name to a process (through `kill`, to keep the tests free of unsafe code).
pub fn send_signal(pid: u32, name: &str) {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{name} {pid} failed");
}

/// Writes `yaml` as version `version` of a ConfigMap-style directory and points `..data` at it
/// with an atomic rename, as the kubelet does.
pub fn configmap_swap(dir: &Path, version: u32, yaml: &str) {
    let version_dir = format!("..v{version}");
    std::fs::create_dir_all(dir.join(&version_dir)).expect("version dir");
    std::fs::write(dir.join(&version_dir).join("ferrogate.yaml"), yaml).expect("write config");
    let tmp_link = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp_link);
    std::os::unix::fs::symlink(&version_dir, &tmp_link).expect("symlink ..data_tmp");
    std::fs::rename(&tmp_link, dir.join("..data")).expect("swap ..data");
}
