//! `ferrogate import-haproxy` against HAProxy itself: real HAProxy runs an haproxy.cfg with the
//! issue's constructs (binds with `ssl crt`, `acl` on `hdr(host)` / `path_beg` / `src`,
//! `use_backend` / `default_backend`, `balance`, `cookie … insert`, `check`, `option forwardfor`,
//! `http-request set-header` / `add-header`, timeouts, `redirect scheme https`) and request
//! rules (an `acl` on a request header, a user-agent `deny`, `redirect location`,
//! `http-response set-header` / `del-header`) on loopback ports; ferrogate runs the
//! translation's routes and upstreams; the same requests must reach the same echo backends with
//! the same headers, and the same refusals, redirects and response headers come back.

use std::fs::File;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use serde_yaml::Value;

use crate::backends::{EchoBackend, RecordedRequest};
use crate::client::{http_request, https_request, Request, Response};
use crate::harness::ports::{start_on_picked_ports, wait_holding};
use crate::harness::sockets::Bound;
use crate::harness::{run_check, write_cert, DaemonBuilder, BIN};

const HAPROXY: &str = "/usr/sbin/haproxy";
/// What HAProxy logs when a bind address is taken.
const HAPROXY_ADDRESS_TAKEN: &str = "cannot bind socket";
const HOSTS: &[&str] = &[
    "chat.example.test",
    "api.example.test",
    "other.example.test",
];

/// The haproxy.cfg, with `{HTTP}`, `{HTTPS}`, `{PEM}` and each backend's `{NAME}` to fill in.
const TEMPLATE: &str = "\
global
    maxconn 256

defaults
    mode http
    option forwardfor
    timeout connect 2s
    timeout client 10s
    timeout server 10s
    timeout http-request 5s
    timeout http-keep-alive 5s

frontend plain
    bind {HTTP}
    http-request redirect scheme https unless { ssl_fc }

frontend edge
    bind {HTTPS} ssl crt {PEM}
    acl host_chat hdr(host) -i chat.example.test
    acl host_api hdr(host) -i api.example.test
    acl p_v1 path_beg /v1/
    acl p_admin path_beg /admin/
    acl internal src 127.0.0.0/8
    acl beta hdr(x-beta) -i yes
    http-request deny if { hdr_sub(user-agent) -i badbot }
    http-request deny if p_admin !internal
    http-request redirect location https://chat.example.test/moved if { hdr(host) -i old.example.test }
    http-request set-header X-Forwarded-Proto https
    http-request set-header X-Env prod
    http-request add-header X-Source edge
    http-response set-header X-Frame-Options DENY
    http-response del-header X-Backend
    use_backend api if host_chat beta
    use_backend api if host_api p_v1
    use_backend admin if p_admin
    use_backend chat if host_chat
    default_backend fallback

backend chat
    balance roundrobin
    cookie SRV insert indirect nocache
    option httpchk GET /health
    server c1 {C1} check cookie c1
    server c2 {C2} check cookie c2

backend api
    balance leastconn
    server a1 {A1} check

backend admin
    balance source
    server m1 {M1}

backend fallback
    server f1 {F1}
";

/// A running HAProxy; killed when dropped.
struct Haproxy {
    child: Child,
    http: SocketAddr,
    https: SocketAddr,
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_haproxy(dir: &Path, text: &dyn Fn(SocketAddr, SocketAddr) -> String) -> Haproxy {
    assert!(
        Path::new(HAPROXY).exists(),
        "{HAPROXY} is missing: scripts/setup.sh installs it (apt-get install haproxy)"
    );
    start_on_picked_ports("haproxy", 2, |picked| {
        let (http, https) = (picked[0], picked[1]);
        let config = dir.join("haproxy.cfg");
        std::fs::write(&config, text(http, https)).expect("write haproxy.cfg");
        let log_path = dir.join("haproxy.log");
        let log = File::create(&log_path).expect("haproxy log");
        let mut child = Command::new(HAPROXY)
            .arg("-db")
            .arg("-f")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().expect("clone log")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn haproxy");
        let sockets = [Bound::Tcp(http), Bound::Tcp(https)];
        wait_holding(
            &mut child,
            "haproxy",
            &sockets,
            &log_path,
            &[HAPROXY_ADDRESS_TAKEN],
        )?;
        Ok(Haproxy { child, http, https })
    })
}

/// A YAML value as a one-line flow value (JSON is YAML).
fn flow(value: &Value) -> String {
    serde_json::to_string(value).expect("YAML value as JSON")
}

/// The further keys of a translated listener (`a: 1, b: 2`), without its address.
fn listener_keys(value: &Value) -> String {
    value
        .as_mapping()
        .into_iter()
        .flatten()
        .filter(|(k, _)| k.as_str() != Some("address"))
        .map(|(k, v)| format!("{}: {}", k.as_str().unwrap_or_default(), flow(v)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The request as a backend saw it, in the parts both proxies must agree on.
fn seen(request: &RecordedRequest) -> Vec<String> {
    let mut parts = vec![
        format!("method: {}", request.method),
        format!("target: {}", request.target),
    ];
    for name in [
        "host",
        "x-forwarded-for",
        "x-forwarded-proto",
        "user-agent",
        "x-client-header",
        "cookie",
        "x-env",
        "x-source",
    ] {
        parts.push(format!("{name}: {:?}", request.header_all(name)));
    }
    parts
}

struct Backends {
    all: Vec<EchoBackend>,
}

impl Backends {
    async fn start() -> Self {
        let mut all = Vec::new();
        for name in ["c1", "c2", "a1", "m1", "f1"] {
            all.push(EchoBackend::start(name).await);
        }
        Self { all }
    }

    /// Requests other than health checks, per backend.
    fn counts(&self) -> Vec<usize> {
        self.all
            .iter()
            .map(|b| {
                b.requests()
                    .iter()
                    .filter(|r| r.target != "/health")
                    .count()
            })
            .collect()
    }

    /// The backend whose count went up since `before`, with the request it got.
    fn which(&self, before: &[usize]) -> (String, RecordedRequest) {
        let now = self.counts();
        let changed: Vec<usize> = (0..now.len()).filter(|&i| now[i] != before[i]).collect();
        assert_eq!(changed.len(), 1, "one backend got the request: {now:?}");
        let backend = &self.all[changed[0]];
        let request = backend
            .requests()
            .into_iter()
            .rev()
            .find(|r| r.target != "/health")
            .expect("the request");
        (backend.name.clone(), request)
    }
}

/// One request through a proxy: which backend got it, what it saw, and the response.
async fn through(
    backends: &Backends,
    addr: SocketAddr,
    request: &Request,
) -> (String, Vec<String>, Response) {
    let before = backends.counts();
    let response = https_request(addr, request).await;
    assert_eq!(response.status, 200, "{}", response.text());
    let (name, got) = backends.which(&before);
    (name, seen(&got), response)
}

/// The HAProxy backend an echo server belongs to (round robin picks either chat server).
fn group(server: &str) -> &str {
    match server {
        "c1" | "c2" => "chat",
        "a1" => "api",
        "m1" => "admin",
        _ => "fallback",
    }
}

/// The `name=value` of the sticky cookie a response set.
fn set_cookie(response: &Response) -> Option<String> {
    let value = response.header("set-cookie")?;
    value.split(';').next().map(str::to_string)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn haproxy_and_the_translation_send_requests_to_the_same_backends() {
    let backends = Backends::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let cert = write_cert(dir.path(), "edge", HOSTS);
    let pem = dir.path().join("edge-combined.pem");
    let combined = format!(
        "{}{}",
        std::fs::read_to_string(&cert.cert).expect("cert"),
        std::fs::read_to_string(&cert.key).expect("key")
    );
    std::fs::write(&pem, combined).expect("write combined PEM");
    let fill = |http: SocketAddr, https: SocketAddr| {
        let mut text = TEMPLATE
            .replace("{HTTP}", &http.to_string())
            .replace("{HTTPS}", &https.to_string())
            .replace("{PEM}", &pem.display().to_string());
        for b in &backends.all {
            text = text.replace(
                &format!("{{{}}}", b.name.to_uppercase()),
                &b.addr.to_string(),
            );
        }
        text
    };
    let haproxy = start_haproxy(dir.path(), &fill);

    // The translation: every rule of the file is translated, nothing noted for them.
    let out = Command::new(BIN)
        .arg("import-haproxy")
        .arg(dir.path().join("haproxy.cfg"))
        .output()
        .expect("run import-haproxy");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let yaml = String::from_utf8_lossy(&out.stdout).into_owned();
    for rule in [
        "X-Env",
        "X-Source",
        "X-Frame-Options",
        "X-Backend",
        "badbot",
        "redirect location",
        "x-beta",
    ] {
        assert!(!stderr.contains(rule), "{rule} is noted:\n{stderr}");
    }
    let translated = dir.path().join("ferrogate.yaml");
    std::fs::write(&translated, &yaml).expect("write translation");
    let check = run_check(&translated);
    assert!(
        check.status.success(),
        "{}\n{yaml}",
        String::from_utf8_lossy(&check.stdout)
    );

    // ferrogate with the translation's routes, upstreams and listener settings; its own
    // loopback ports and the same certificate.
    let value: Value = serde_yaml::from_str(&yaml).expect("translation is YAML");
    let mut builder = DaemonBuilder::new()
        .certificate("edge", HOSTS)
        .http_listener_with(&listener_keys(&value["listeners"]["http"]))
        .https_listener_with(&listener_keys(&value["listeners"]["https"]));
    for route in value["routes"].as_sequence().expect("routes") {
        builder = builder.route(&flow(route));
    }
    for (name, upstream) in value["upstreams"].as_mapping().expect("upstreams") {
        let body: String = upstream
            .as_mapping()
            .expect("upstream mapping")
            .iter()
            .map(|(k, v)| format!("    {}: {}\n", k.as_str().unwrap_or_default(), flow(v)))
            .collect();
        builder = builder.upstream_yaml(name.as_str().expect("upstream name"), &body);
    }
    let ferrogate = builder.start().await;

    let requests = [
        ("chat.example.test", "/c/1?x=1"),
        ("api.example.test", "/v1/models"),
        ("api.example.test", "/other"),
        ("other.example.test", "/admin/panel"),
        ("chat.example.test", "/admin/panel"),
        ("unknown.example.test", "/"),
    ];
    for (host, target) in requests {
        let request = Request::get(host, target)
            .header("User-Agent", "parity-test/1")
            .header("X-Client-Header", "kept");
        let (h_name, h_seen, _) = through(&backends, haproxy.https, &request).await;
        let (f_name, f_seen, _) = through(&backends, ferrogate.https, &request).await;
        assert_eq!(
            group(&h_name),
            group(&f_name),
            "{host}{target}: haproxy sent it to {h_name}, ferrogate to {f_name}"
        );
        assert_eq!(h_seen, f_seen, "{host}{target}: what {h_name} saw");
        for expected in [
            format!("host: [{host:?}]"),
            "x-forwarded-for: [\"127.0.0.1\"]".to_string(),
            "x-forwarded-proto: [\"https\"]".to_string(),
            "x-client-header: [\"kept\"]".to_string(),
            "x-env: [\"prod\"]".to_string(),
            "x-source: [\"edge\"]".to_string(),
            format!("target: {target}"),
        ] {
            assert!(h_seen.contains(&expected), "{expected} in {h_seen:?}");
        }
    }

    // The request rules: a header condition picks the backend, response headers are set and
    // removed, a user agent is refused and a host is redirected, by both alike.
    let beta = Request::get("chat.example.test", "/c/2").header("X-Beta", "yes");
    let (h_name, h_seen, h_response) = through(&backends, haproxy.https, &beta).await;
    let (f_name, f_seen, f_response) = through(&backends, ferrogate.https, &beta).await;
    assert_eq!((h_name.as_str(), f_name.as_str()), ("a1", "a1"));
    assert_eq!(h_seen, f_seen);
    for response in [&h_response, &f_response] {
        assert_eq!(response.header("x-frame-options"), Some("DENY"));
        assert_eq!(response.header("x-backend"), None, "removed by del-header");
    }
    let before = backends.counts();
    for proxy in [haproxy.https, ferrogate.https] {
        let bot = Request::get("chat.example.test", "/").header("User-Agent", "BadBot/2.0");
        assert_eq!(https_request(proxy, &bot).await.status, 403);
        let old = https_request(proxy, &Request::get("old.example.test", "/x")).await;
        assert_eq!(old.status, 302);
        assert_eq!(
            old.header("location"),
            Some("https://chat.example.test/moved")
        );
    }
    assert_eq!(
        backends.counts(),
        before,
        "refused and redirected requests reached no backend"
    );

    // Round robin with an inserted cookie: new clients are spread over c1 and c2 by both, and a
    // client that shows its cookie stays where it was.
    for proxy in [haproxy.https, ferrogate.https] {
        let mut reached = Vec::new();
        for _ in 0..4 {
            let (name, _, response) =
                through(&backends, proxy, &Request::get("chat.example.test", "/")).await;
            let cookie = set_cookie(&response).expect("a sticky cookie");
            for _ in 0..3 {
                let again = Request::get("chat.example.test", "/").header("Cookie", &cookie);
                let (stayed, seen_again, _) = through(&backends, proxy, &again).await;
                assert_eq!(
                    stayed, name,
                    "{proxy}: the cookie keeps the client on {name}"
                );
                assert!(
                    seen_again.contains(&"cookie: []".to_string()),
                    "the sticky cookie is removed before the server: {seen_again:?}"
                );
            }
            reached.push(name);
        }
        reached.sort();
        reached.dedup();
        assert_eq!(reached, ["c1", "c2"], "{proxy}: round robin over both");
    }

    // `redirect scheme https` on the plain listener: both send the client to https.
    for (proxy, plain) in [("haproxy", haproxy.http), ("ferrogate", ferrogate.http)] {
        let response = http_request(plain, &Request::get("chat.example.test", "/c/1?x=1")).await;
        assert!(
            [301, 302, 307, 308].contains(&response.status),
            "{proxy}: {}",
            response.status
        );
        let location = response.header("location").unwrap_or_default();
        assert!(
            location.starts_with("https://chat.example.test") && location.ends_with("/c/1?x=1"),
            "{proxy}: {location}"
        );
    }
}
