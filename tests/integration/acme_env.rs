//! Real ACME test servers on loopback ephemeral ports: Pebble (with its own TLS CA made by
//! openssl), pebble-challtestsrv (mock DNS for Pebble, TXT records for DNS-01) and a bind9
//! `named` primary accepting TSIG-signed updates. They are told their ports, so each starts on
//! picked ones and again on fresh ones when it reports one taken. Each is killed when dropped.

mod challenge_port;

use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::backends::{closed_port, ClosedPort};
use crate::harness::ports::{start_on_picked_ports, wait_holding};
use crate::harness::sockets::Bound;

pub use challenge_port::ChallengePort;

/// What Go programs (pebble, pebble-challtestsrv) log when an address is taken.
const GO_ADDRESS_TAKEN: &str = "bind: address already in use";
/// What named logs when its TCP socket's address is taken (it runs on without it), and when a
/// taken UDP address left it no interface (it exits).
const NAMED_ADDRESS_TAKEN: [&str; 2] = [
    "address in use",
    "unable to listen on any configured interfaces",
];

/// True when the ACME test servers are installed (scripts/setup.sh installs them).
pub fn servers_installed() -> bool {
    [
        "pebble",
        "pebble-challtestsrv",
        "named",
        "dig",
        "openssl",
        "curl",
    ]
    .iter()
    .all(|tool| which(tool).is_some())
}

fn which(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|dir| dir.join(tool))
        .find(|candidate| candidate.is_file())
}

fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// pebble-challtestsrv: DNS for Pebble (A = 127.0.0.1 for every name) and TXT records set
/// through its management API.
pub struct ChallTestSrv {
    child: Child,
    pub dns: SocketAddr,
    pub management: SocketAddr,
    /// Holds its log.
    _dir: TempDir,
}

impl ChallTestSrv {
    pub fn start() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let log_path = dir.path().join("challtestsrv.log");
        let (child, dns, management) = start_on_picked_ports("pebble-challtestsrv", 2, |picked| {
            let (dns, management) = (picked[0], picked[1]);
            let log = File::create(&log_path).expect("challtestsrv log");
            let mut child = Command::new("pebble-challtestsrv")
                .args(["-dns01", &dns.to_string()])
                .args(["-management", &management.to_string()])
                .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
                .args(["-defaultIPv6", ""])
                .stdout(Stdio::from(log.try_clone().expect("clone")))
                .stderr(Stdio::from(log))
                .spawn()
                .expect("spawn pebble-challtestsrv");
            let sockets = [Bound::Tcp(management), Bound::Tcp(dns), Bound::Udp(dns)];
            wait_holding(
                &mut child,
                "pebble-challtestsrv",
                &sockets,
                &log_path,
                &[GO_ADDRESS_TAKEN],
            )?;
            Ok((child, dns, management))
        });
        Self {
            child,
            dns,
            management,
            _dir: dir,
        }
    }
}

impl Drop for ChallTestSrv {
    fn drop(&mut self) {
        kill(&mut self.child);
    }
}

/// Pebble, validating HTTP-01 on `http_port` and resolving names through `dns`.
pub struct Pebble {
    child: Child,
    dir: TempDir,
    pub directory: String,
    pub management: SocketAddr,
    /// The CA of Pebble's own HTTPS certificate (the daemon's `acme.ca_root`).
    pub ca_root: PathBuf,
    /// Where TLS-ALPN-01 would be validated: nothing answers there.
    _tls_port: ClosedPort,
}

impl Pebble {
    pub fn start(http_port: u16, dns: SocketAddr) -> Self {
        Self::start_with(http_port, dns, None)
    }

    /// Like [`Pebble::start`]; with `eab = Some((kid, base64url key))` Pebble requires external
    /// account binding with that key.
    pub fn start_with(http_port: u16, dns: SocketAddr, eab: Option<(&str, &str)>) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        openssl(
            d,
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                "ca.key",
                "-out",
                "ca.pem",
                "-days",
                "30",
                "-subj",
                "/CN=pebble-test-ca",
            ],
        );
        std::fs::write(
            d.join("san.ext"),
            "subjectAltName=DNS:localhost,IP:127.0.0.1\n",
        )
        .expect("ext");
        openssl(
            d,
            &[
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                "key.pem",
                "-out",
                "leaf.csr",
                "-subj",
                "/CN=localhost",
            ],
        );
        openssl(
            d,
            &[
                "x509",
                "-req",
                "-in",
                "leaf.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                "cert.pem",
                "-days",
                "30",
                "-extfile",
                "san.ext",
            ],
        );
        let tls_port = closed_port();
        let log_path = d.join("pebble.log");
        let (child, listen, management) = start_on_picked_ports("pebble", 2, |picked| {
            let (listen, management) = (picked[0], picked[1]);
            let config = serde_json::json!({ "pebble": {
                "listenAddress": listen.to_string(),
                "managementListenAddress": management.to_string(),
                "certificate": d.join("cert.pem"),
                "privateKey": d.join("key.pem"),
                "httpPort": http_port,
                "tlsPort": tls_port.addr.port(),
                "ocspResponderURL": "",
                "externalAccountBindingRequired": eab.is_some(),
                "externalAccountMACKeys": eab.map(|(kid, key)| serde_json::json!({ kid: key })).unwrap_or_else(|| serde_json::json!({})),
            }});
            std::fs::write(d.join("pebble.json"), config.to_string()).expect("pebble config");
            let log = File::create(&log_path).expect("pebble log");
            let mut child = Command::new("pebble")
                .arg("-config")
                .arg(d.join("pebble.json"))
                .args(["-dnsserver", &dns.to_string()])
                .env("PEBBLE_VA_NOSLEEP", "1")
                .stdout(Stdio::from(log.try_clone().expect("clone")))
                .stderr(Stdio::from(log))
                .spawn()
                .expect("spawn pebble");
            let sockets = [Bound::Tcp(listen), Bound::Tcp(management)];
            wait_holding(
                &mut child,
                "pebble",
                &sockets,
                &log_path,
                &[GO_ADDRESS_TAKEN],
            )?;
            Ok((child, listen, management))
        });
        Self {
            child,
            directory: format!("https://{listen}/dir"),
            management,
            ca_root: d.join("ca.pem"),
            dir,
            _tls_port: tls_port,
        }
    }

    /// The root that issued certificates chain to, written as PEM; returns its path.
    pub fn issuing_root(&self) -> PathBuf {
        let path = self.dir.path().join("issuing-root.pem");
        let out = Command::new("curl")
            .args(["--noproxy", "*", "-sSf", "--cacert"])
            .arg(&self.ca_root)
            .arg(format!("https://{}/roots/0", self.management))
            .output()
            .expect("curl pebble roots");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::write(&path, &out.stdout).expect("write root");
        path
    }

    /// The `acme:` section pointing at this Pebble (quick retries for tests).
    pub fn acme_yaml(&self, extra: &str) -> String {
        format!(
            "acme:\n  directory: {}\n  email: test@example.com\n  ca_root: {}\n  retry_min: 1s\n  retry_max: 4s\n{extra}",
            self.directory,
            self.ca_root.display()
        )
    }

    /// Pebble's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("pebble.log")).unwrap_or_default()
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        kill(&mut self.child);
        if std::thread::panicking() {
            eprintln!(
                "---- pebble log ----\n{}---- end of pebble log ----",
                self.log()
            );
        }
    }
}

/// A bind9 primary for `zone` on a loopback port, accepting updates signed with the TSIG key
/// `acme` (hmac-sha256). `_acme-challenge.alias.ZONE` is a CNAME to
/// `_acme-challenge.delegated.ZONE` (challenge delegation).
pub struct Named {
    child: Child,
    dir: TempDir,
    pub addr: SocketAddr,
    pub secret_file: PathBuf,
}

impl Named {
    pub fn start(zone: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        let secret: String = {
            use base64::Engine;
            let bytes: Vec<u8> = (0..32).map(|_| rand_byte()).collect();
            base64::engine::general_purpose::STANDARD.encode(bytes)
        };
        let secret_file = d.join("tsig.secret");
        std::fs::write(&secret_file, format!("{secret}\n")).expect("secret");
        std::fs::write(
            d.join("zone.db"),
            format!(
                "$TTL 60\n@ IN SOA ns1.{zone}. admin.{zone}. 1 60 60 600 60\n@ IN NS ns1.{zone}.\nns1 IN A 127.0.0.1\n@ IN A 127.0.0.1\n* IN A 127.0.0.1\n_acme-challenge.alias IN CNAME _acme-challenge.delegated\n"
            ),
        )
        .expect("zone");
        let log_path = d.join("named.log");
        let named = which("named").expect("named installed");
        // `reuseport no`: one socket per protocol, which no other named can share.
        let (child, addr) = start_on_picked_ports("named", 1, |picked| {
            let addr = picked[0];
            let conf = format!(
                "options {{ directory \"{dir}\"; pid-file \"{dir}/named.pid\"; listen-on port {port} {{ 127.0.0.1; }}; listen-on-v6 {{ none; }}; reuseport no; recursion no; dnssec-validation no; }};\ncontrols {{ }};\nkey \"acme\" {{ algorithm hmac-sha256; secret \"{secret}\"; }};\nzone \"{zone}\" {{ type primary; file \"{dir}/zone.db\"; allow-update {{ key \"acme\"; }}; }};\n",
                dir = d.display(),
                port = addr.port()
            );
            std::fs::write(d.join("named.conf"), conf).expect("named.conf");
            let log = File::create(&log_path).expect("log");
            let mut child = Command::new(&named)
                .args(["-g", "-c"])
                .arg(d.join("named.conf"))
                .stdout(Stdio::from(log.try_clone().expect("clone")))
                .stderr(Stdio::from(log))
                .spawn()
                .expect("spawn named");
            let sockets = [Bound::Tcp(addr), Bound::Udp(addr)];
            wait_holding(
                &mut child,
                "named",
                &sockets,
                &log_path,
                &NAMED_ADDRESS_TAKEN,
            )?;
            Ok((child, addr))
        });
        Self {
            child,
            dir,
            addr,
            secret_file,
        }
    }

    /// The TXT values at `name`, asked with dig.
    pub fn txt(&self, name: &str) -> Vec<String> {
        let out = Command::new("dig")
            .args([
                &format!("@{}", self.addr.ip()),
                "-p",
                &self.addr.port().to_string(),
            ])
            .args(["+short", "TXT", name])
            .output()
            .expect("dig");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| l.trim_matches('"').to_string())
            .filter(|l| !l.is_empty())
            .collect()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("named.log")).unwrap_or_default()
    }
}

impl Drop for Named {
    fn drop(&mut self) {
        kill(&mut self.child);
        if std::thread::panicking() {
            eprintln!(
                "---- named log ----\n{}---- end of named log ----",
                self.log()
            );
        }
    }
}

fn rand_byte() -> u8 {
    use std::hash::BuildHasher;
    (std::collections::hash_map::RandomState::new().hash_one(Instant::now()) & 0xff) as u8
}

/// `curl --cacert ROOT https://NAME:PORT/` with NAME resolved to the daemon: exit status and
/// stdout+stderr. Succeeds only when the served chain verifies against ROOT for NAME.
pub fn curl_verified(root: &Path, name: &str, https: SocketAddr) -> (bool, String) {
    let out = Command::new("curl")
        .args(["--noproxy", "*", "-sS", "--max-time", "5", "--cacert"])
        .arg(root)
        .args([
            "--resolve",
            &format!("{name}:{}:{}", https.port(), https.ip()),
        ])
        .arg(format!("https://{name}:{}/", https.port()))
        .output()
        .expect("curl");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Polls [`curl_verified`] until it succeeds or `timeout` passes; returns the last output.
pub fn wait_verified(root: &Path, name: &str, https: SocketAddr, timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        let (ok, text) = curl_verified(root, name, https);
        if ok {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "{name}: the served certificate did not verify against Pebble's root within {timeout:?}: {text}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Runs `ferrogate certs --config PATH`.
pub fn certs_report(config: &Path) -> String {
    let out = Command::new(crate::harness::BIN)
        .args(["certs", "--config"])
        .arg(config)
        .output()
        .expect("ferrogate certs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
