//! The `peers` scenario: ferrogate (round_robin, cache_aware, and cache_aware fed by the nodes'
//! KV events when the daemon's config takes them) against the routers built for the job,
//! sglang-router and vllm-router (PyPI wheels, started from the virtual environment in
//! `BENCH_PEERS_VENV` with their cache-aware defaults), each in front of fresh simulated nodes
//! under the same seeded workload: near round-robin saturation, twice that load, one hot tenant,
//! random prompts, a node killed mid-run, a node added mid-run, caches under eviction pressure.
//! ferrogate rows also say how many prefix tokens its index predicted cached against what the
//! nodes hit. Prints a table per scenario and writes every number to `BENCH_PEERS_JSON`.
//! `BENCH_PEER_SCENARIOS` and `BENCH_PEER_SYSTEMS` (comma-separated names, see [`System::key`])
//! run a subset.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferrogate_sim::KvEventsConfig;
use serde_json::{json, Value};

use super::cluster::{self, free_addr, Daemon};
use super::report::{self, secs, Summary};
use super::runner::{self, Event, Record, Run};
use super::workload::{Shape, Workload};
use super::{client, policy, Knobs};

/// How long a router may take to answer on its port.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// Prompt tokens of the `random` scenario (each request a fresh prompt), as the `random` control.
const RANDOM_PROMPT_TOKENS: usize = 1_500;
/// The `pressure` scenario's cache: system prompts per node as a multiple of tenants / nodes,
/// besides the room for chat histories (with the defaults a node's whole cache then holds about
/// 2.6 system prompts where 4 tenants would be its share: no placement fits them all, and the
/// nodes evict all the time).
const PRESSURE_CACHE_FACTOR: f64 = 0.25;
/// The daemon's counter of the prefix tokens cache_aware predicted cached where it sent each
/// request, set against what the nodes report hitting.
const PREDICTED_METRIC: &str = "ferrogate_inference_predicted_prefix_tokens_total";

/// One system under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum System {
    Ferrogate(&'static str),
    /// ferrogate `cache_aware` with each server's KV event endpoints in its config.
    FerrogateKvEvents,
    SglangRouter,
    /// vllm-router with this policy (`cache_aware`, or `kv_aware` on the nodes' KV events).
    VllmRouter(&'static str),
}

impl System {
    pub fn label(&self) -> String {
        match self {
            System::Ferrogate(p) => format!("ferrogate {p}"),
            System::FerrogateKvEvents => "ferrogate cache_aware + kv_events".into(),
            System::SglangRouter => "sglang-router 0.3.2 cache_aware".into(),
            System::VllmRouter(p) => format!("vllm-router 0.1.17 {p}"),
        }
    }

    /// The name `BENCH_PEER_SYSTEMS` selects it by.
    pub fn key(&self) -> &'static str {
        match self {
            System::Ferrogate(p) => p,
            System::FerrogateKvEvents => "kv_events",
            System::SglangRouter => "sglang",
            System::VllmRouter("kv_aware") => "vllm_kv_aware",
            System::VllmRouter(_) => "vllm",
        }
    }

    fn needs_events(&self) -> bool {
        matches!(
            self,
            System::FerrogateKvEvents | System::VllmRouter("kv_aware")
        )
    }
}

/// A router process started from the venv, killed when dropped.
struct PeerProcess {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Drop for PeerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What clients talk to.
enum Front {
    Daemon(Arc<Daemon>),
    Peer(PeerProcess),
}

impl Front {
    fn addr(&self) -> SocketAddr {
        match self {
            Front::Daemon(d) => d.lb,
            Front::Peer(p) => p.addr,
        }
    }
}

fn venv() -> PathBuf {
    std::env::var_os("BENCH_PEERS_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/target/peers-venv")))
}

fn urls(nodes: &[SocketAddr]) -> Vec<String> {
    nodes.iter().map(|a| format!("http://{a}")).collect()
}

async fn start_peer(
    system: System,
    nodes: &[SocketAddr],
    events: &[(String, Option<String>)],
) -> Result<PeerProcess, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let addr = free_addr();
    let prometheus = free_addr();
    let mut cmd = match system {
        System::SglangRouter => {
            let mut c = Command::new(venv().join("bin/sglang-router"));
            c.arg("launch").arg("--worker-urls").args(urls(nodes));
            c.args(["--host", "127.0.0.1", "--port", &addr.port().to_string()]);
            c.args(["--prometheus-host", "127.0.0.1"]);
            c.args(["--prometheus-port", &prometheus.port().to_string()]);
            c.args(["--log-level", "warn"]);
            c
        }
        System::VllmRouter(p) => {
            let mut c = Command::new(venv().join("bin/vllm-router"));
            c.arg("--worker-urls").args(urls(nodes));
            c.args(["--host", "127.0.0.1", "--port", &addr.port().to_string()]);
            c.args(["--prometheus-host", "127.0.0.1"]);
            c.args(["--prometheus-port", &prometheus.port().to_string()]);
            c.args(["--policy", p, "--log-level", "warning"]);
            if p == "kv_aware" {
                for (url, (pub_at, replay)) in urls(nodes).iter().zip(events) {
                    c.arg("--kv-event-source").arg(format!("{url}={pub_at}"));
                    if let Some(replay) = replay {
                        c.arg("--kv-event-replay-source")
                            .arg(format!("{url}={replay}"));
                    }
                }
                c.args(["--kv-event-model", super::workload::MODEL]);
            }
            c
        }
        _ => return Err("not a peer".into()),
    };
    let log = std::fs::File::create(dir.path().join("router.log")).map_err(|e| e.to_string())?;
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::from(log.try_clone().map_err(|e| e.to_string())?))
        .stderr(Stdio::from(log))
        .spawn()
        .map_err(|e| {
            format!(
                "{}: {e} (run benches/inference_peers.py first)",
                system.label()
            )
        })?;
    let mut peer = PeerProcess {
        child,
        addr,
        _dir: dir,
    };
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Ok(Some(status)) = peer.child.try_wait() {
            let log =
                std::fs::read_to_string(peer._dir.path().join("router.log")).unwrap_or_default();
            let tail: String = log
                .chars()
                .rev()
                .take(2000)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            return Err(format!("{} exited ({status}): {tail}", system.label()));
        }
        if tokio::net::TcpStream::connect(addr).await.is_ok() && ready(addr).await {
            return Ok(peer);
        }
        if Instant::now() > deadline {
            return Err(format!("{} did not start in time", system.label()));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Whether a router answers a tiny completion (its workers registered and healthy).
async fn ready(addr: SocketAddr) -> bool {
    let body = serde_json::to_vec(&json!({"model": super::workload::MODEL, "max_tokens": 1,
        "stream": true, "messages": [{"role": "user", "content": "ready?"}]}))
    .unwrap_or_default();
    let o = client::chat(&client::client(), addr, body, None).await;
    o.status == client::Status::Done
}

/// Asks a peer to take one more worker (vllm-router: `POST /add_worker?url=`, sglang-router:
/// `POST /workers {"url"}`); returns the HTTP status line it answered.
fn add_worker(system: System, front: SocketAddr, node: SocketAddr) -> String {
    let request = if system == System::SglangRouter {
        let body = format!("{{\"url\":\"http://{node}\"}}");
        format!(
            "POST /workers HTTP/1.1\r\nhost: {front}\r\ncontent-type: application/json\r\n\
             content-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
    } else {
        format!(
            "POST /add_worker?url=http://{node} HTTP/1.1\r\nhost: {front}\r\n\
             content-length: 0\r\nconnection: close\r\n\r\n"
        )
    };
    match cluster::http_call(front, &request, Duration::from_secs(30)) {
        Ok(answer) => answer.lines().next().unwrap_or("no answer").to_string(),
        Err(e) => format!("error: {e}"),
    }
}

/// One scenario's workload, rate and timed event.
#[derive(Debug, Clone)]
struct Scenario {
    name: &'static str,
    title: String,
    shape: Shape,
    peak: f64,
    seconds: f64,
    change: Option<Change>,
    /// The nodes' cache size as [`Knobs::cache_factor`], when not the knobs' own.
    cache_factor: Option<f64>,
}

impl Scenario {
    /// The knobs this scenario's runs use: `knobs` with its own cache size, if it has one.
    fn knobs(&self, knobs: &Knobs) -> Knobs {
        Knobs {
            cache_factor: self.cache_factor.unwrap_or(knobs.cache_factor),
            ..knobs.clone()
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Change {
    /// Node 0 dies at this share of the run.
    Kill(f64),
    /// One more node joins at this share of the run.
    Add(f64),
}

fn scenarios(knobs: &Knobs) -> Vec<Scenario> {
    let base = knobs.peer_rate;
    let random_peak = knobs.nodes as f64 * knobs.node_capacity(RANDOM_PROMPT_TOKENS as f64);
    let pressure_blocks = Knobs {
        cache_factor: PRESSURE_CACHE_FACTOR,
        ..knobs.clone()
    }
    .node_shape()
    .cache_blocks;
    vec![
        Scenario {
            name: "saturation",
            title: format!("near round-robin saturation, rate to {base:.1} req/s"),
            shape: knobs.shape(),
            peak: base,
            seconds: knobs.seconds,
            change: None,
            cache_factor: None,
        },
        Scenario {
            name: "double",
            title: format!("twice that load, rate to {:.1} req/s", 2.0 * base),
            shape: knobs.shape(),
            peak: 2.0 * base,
            seconds: knobs.seconds,
            change: None,
            cache_factor: None,
        },
        Scenario {
            name: "hot",
            title: format!("tenant 0 opens half the chats, rate to {base:.1} req/s"),
            shape: Shape {
                hot_share: 0.5,
                ..knobs.shape()
            },
            peak: base,
            seconds: knobs.seconds,
            change: None,
            cache_factor: None,
        },
        Scenario {
            name: "random",
            title: format!(
                "every prompt new ({RANDOM_PROMPT_TOKENS} tokens, no shared prefix), rate to \
                 {random_peak:.1} req/s"
            ),
            shape: Shape {
                random_prompts: true,
                system_tokens: RANDOM_PROMPT_TOKENS,
                ..knobs.shape()
            },
            peak: random_peak,
            seconds: knobs.seconds,
            change: None,
            cache_factor: None,
        },
        Scenario {
            name: "kill",
            title: format!("node 0 killed at 60% of the run, rate to {base:.1} req/s"),
            shape: knobs.shape(),
            peak: base,
            seconds: knobs.seconds,
            change: Some(Change::Kill(0.6)),
            cache_factor: None,
        },
        Scenario {
            name: "add",
            title: format!("a node added at 55% of the run, rate to {base:.1} req/s"),
            shape: knobs.shape(),
            peak: base,
            seconds: knobs.seconds,
            change: Some(Change::Add(0.55)),
            cache_factor: None,
        },
        Scenario {
            name: "pressure",
            title: format!(
                "caches under eviction pressure ({} blocks per node: {:.1} system prompts where \
                 {:.1} tenants are each node's share), rate to {base:.1} req/s",
                pressure_blocks,
                (pressure_blocks * super::BLOCK_TOKENS) as f64 / knobs.system_tokens as f64,
                knobs.tenants as f64 / knobs.nodes as f64,
            ),
            shape: knobs.shape(),
            peak: base,
            seconds: knobs.seconds,
            change: None,
            cache_factor: Some(PRESSURE_CACHE_FACTOR),
        },
    ]
}

/// The numbers of one system in one scenario.
#[derive(Debug, Clone)]
struct Row {
    system: System,
    summary: Summary,
    /// Mean over tenants of the nodes that served them (in the hold).
    tenant_spread: f64,
    /// The hot tenant's TTFT against every other tenant's.
    split: TenantSplit,
    /// Share served by the changed node (killed: after the kill; added: after the add).
    changed_share: Option<f64>,
    /// Prefix tokens the daemon predicted cached where it sent the requests of the hold, and
    /// what the nodes reported hitting over the same time (ferrogate only).
    index: Option<(f64, u64)>,
    note: String,
}

/// Tenant of a chat id `chat-T-N`.
fn tenant(record: &Record) -> Option<usize> {
    record.chat_id.as_deref()?.split('-').nth(1)?.parse().ok()
}

/// The tenant `hot` scenario favours.
const HOT_TENANT: usize = 0;

/// TTFT of the hot tenant's requests and of every other tenant's, each (p50, p90) in seconds
/// over the requests sent in the hold, and how many nodes served each tenant there.
#[derive(Debug, Clone, Default)]
struct TenantSplit {
    hot: (f64, f64),
    others: (f64, f64),
    /// Tenant → nodes that served it.
    spread: BTreeMap<usize, usize>,
}

fn tenant_split(run: &Run, from: Duration, to: Duration) -> TenantSplit {
    let mut hot = Vec::new();
    let mut others = Vec::new();
    let mut nodes: BTreeMap<usize, BTreeSet<String>> = BTreeMap::new();
    for r in run
        .records
        .iter()
        .filter(|r| r.sent_at >= from && r.sent_at < to)
    {
        let Some(t) = tenant(r) else { continue };
        if let Some(ttft) = r.outcome.ttft {
            let into = if t == HOT_TENANT {
                &mut hot
            } else {
                &mut others
            };
            into.push(ttft.as_secs_f64());
        }
        if let (true, Some(node)) = (r.ok(), &r.outcome.node) {
            nodes.entry(t).or_default().insert(node.clone());
        }
    }
    hot.sort_by(f64::total_cmp);
    others.sort_by(f64::total_cmp);
    let p = |v: &[f64]| (report::percentile(v, 0.5), report::percentile(v, 0.9));
    TenantSplit {
        hot: p(&hot),
        others: p(&others),
        spread: nodes.into_iter().map(|(t, n)| (t, n.len())).collect(),
    }
}

/// With `BENCH_DEBUG`: per tenant, the requests each node served in the hold and how many of
/// them waited over half a second for their first token.
fn debug_tenants(system: &System, run: &Run, from: Duration) {
    let mut by: BTreeMap<usize, BTreeMap<String, (usize, usize)>> = BTreeMap::new();
    for r in run.records.iter().filter(|r| r.ok() && r.sent_at >= from) {
        if let (Some(t), Some(node)) = (tenant(r), &r.outcome.node) {
            let slow = r
                .outcome
                .ttft
                .is_some_and(|t| t > Duration::from_millis(500));
            let e = by.entry(t).or_default().entry(node.clone()).or_default();
            e.0 += 1;
            e.1 += usize::from(slow);
        }
    }
    eprintln!("{} (tenant: node requests/slow):", system.label());
    for r in run.records.iter().filter(|r| r.ok() && r.sent_at >= from) {
        let slow = r.outcome.ttft.filter(|t| *t > Duration::from_millis(500));
        if let (Some(ttft), Some(t), Some(node)) = (slow, tenant(r), &r.outcome.node) {
            let before = |x: &&Record| x.ok() && x.done_at() < r.sent_at && tenant(x) == Some(t);
            let seen = run.records.iter().filter(before).count();
            let here = run
                .records
                .iter()
                .filter(before)
                .filter(|x| x.outcome.node.as_ref() == Some(node))
                .count();
            eprintln!(
                "  slow: at {:.1} s tenant {t} ttft {:.2} s, tenant done before {seen}, on this node {here}",
                r.sent_at.as_secs_f64(),
                ttft.as_secs_f64()
            );
        }
    }
    debug_tail(run, from);
    for (t, nodes) in by {
        let cells: Vec<String> = nodes
            .iter()
            .map(|(n, (c, s))| format!("{}={c}/{s}", n.rsplit(':').next().unwrap_or(n)))
            .collect();
        eprintln!("  {t:>2}: {}", cells.join(" "));
    }
}

/// With `BENCH_DEBUG`: the slowest tenth of the hold's first tokens, split into first turns
/// (a chat's first request) and follow-ups, and by node.
fn debug_tail(run: &Run, from: Duration) {
    let mut firsts = BTreeSet::new();
    let mut first_turn = Vec::with_capacity(run.records.len());
    let mut order: Vec<&Record> = run.records.iter().collect();
    order.sort_by_key(|r| r.sent_at);
    for r in &order {
        first_turn.push(r.chat_id.as_ref().is_some_and(|c| firsts.insert(c.clone())));
    }
    let held: Vec<(Duration, bool, &str)> = order
        .iter()
        .zip(&first_turn)
        .filter(|(r, _)| r.ok() && r.sent_at >= from)
        .filter_map(|(r, f)| Some((r.outcome.ttft?, *f, r.outcome.node.as_deref()?)))
        .collect();
    let mut ttfts: Vec<Duration> = held.iter().map(|h| h.0).collect();
    ttfts.sort();
    let Some(&p90) = ttfts.get(ttfts.len() * 9 / 10) else {
        return;
    };
    let tail: Vec<_> = held.iter().filter(|h| h.0 >= p90).collect();
    let firsts_all = held.iter().filter(|h| h.1).count();
    let firsts_tail = tail.iter().filter(|h| h.1).count();
    let mut per_node: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for h in &held {
        let e = per_node
            .entry(h.2.rsplit(':').next().unwrap_or(h.2))
            .or_default();
        e.0 += 1;
        e.1 += usize::from(h.0 >= p90);
    }
    let mut follow: Vec<f64> = tail
        .iter()
        .filter(|h| !h.1)
        .map(|h| h.0.as_secs_f64())
        .collect();
    follow.sort_by(f64::total_cmp);
    eprintln!(
        "  tail (ttft >= p90 {:.0} ms): {} of {}, first turns {firsts_tail} of {firsts_all}; follow-ups' ttft {:?} ms; per node (all/tail) {per_node:?}",
        p90.as_secs_f64() * 1e3,
        tail.len(),
        held.len(),
        follow.iter().map(|f| (f * 1e3) as u64).collect::<Vec<_>>()
    );
}

fn tenant_spread(run: &Run, from: Duration) -> f64 {
    let mut nodes: BTreeMap<usize, BTreeSet<String>> = BTreeMap::new();
    for r in run.records.iter().filter(|r| r.ok() && r.sent_at >= from) {
        if let (Some(t), Some(node)) = (tenant(r), &r.outcome.node) {
            nodes.entry(t).or_default().insert(node.clone());
        }
    }
    if nodes.is_empty() {
        return f64::NAN;
    }
    nodes.values().map(|n| n.len() as f64).sum::<f64>() / nodes.len() as f64
}

/// Whether the daemon's config accepts `kv_events` on a server (checked with `ferrogate check`).
pub fn daemon_takes_kv_events() -> bool {
    let Ok(dir) = tempfile::tempdir() else {
        return false;
    };
    let kv = [(
        String::from("tcp://127.0.0.1:5557"),
        Some(String::from("tcp://127.0.0.1:5558")),
    )];
    let yaml = cluster::kv_events_probe_yaml(&dir.path().join("state"), &kv);
    let path = dir.path().join("probe.yaml");
    if std::fs::write(&path, yaml).is_err() {
        return false;
    }
    Command::new(cluster::BIN)
        .arg("check")
        .arg("--config")
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

async fn run_one(knobs: &Knobs, scenario: &Scenario, system: System) -> Result<Row, String> {
    let knobs = &scenario.knobs(knobs);
    let total = knobs.nodes + usize::from(matches!(scenario.change, Some(Change::Add(_))));
    let mut handles = Vec::new();
    for _ in 0..total {
        let mut cfg = cluster::node_config(&knobs.node_shape());
        if system.needs_events() {
            cfg.kv_events = Some(KvEventsConfig {
                replay_endpoint: Some("tcp://127.0.0.1:0".into()),
                ..KvEventsConfig::on("tcp://127.0.0.1:0")
            });
        }
        handles.push(ferrogate_sim::start(cfg).await.map_err(|e| e.to_string())?);
    }
    let addrs: Vec<SocketAddr> = handles.iter().map(|h| h.addr()).collect();
    let events: Vec<(String, Option<String>)> = handles
        .iter()
        .map(|h| h.kv_event_endpoints().unwrap_or_default())
        .collect();
    let listed = &addrs[..knobs.nodes];
    let front = match system {
        System::Ferrogate(name) => Front::Daemon(Arc::new(
            Daemon::start(listed, policy(name), knobs.admission()).await,
        )),
        System::FerrogateKvEvents => Front::Daemon(Arc::new(
            Daemon::start_with_kv_events(
                listed,
                policy("cache_aware"),
                knobs.admission(),
                &events[..knobs.nodes],
            )
            .await,
        )),
        _ => Front::Peer(start_peer(system, listed, &events[..knobs.nodes]).await?),
    };
    // The readiness probe of a peer went to one node: start every run from cold caches.
    for h in &handles {
        h.reset_prefix_cache();
    }
    let nodes = runner::nodes(handles);
    let plan = knobs.plan(scenario.seconds, scenario.peak);
    let mut timed = Vec::new();
    let snapshot = Arc::new(std::sync::Mutex::new((0, 0)));
    {
        let nodes = nodes.clone();
        let snapshot = snapshot.clone();
        timed.push(Event {
            at: plan.ramp,
            action: Box::new(move || {
                *snapshot.lock().expect("snapshot lock") = runner::cache_tokens(&nodes);
            }),
        });
    }
    let predicted_at_ramp = Arc::new(std::sync::Mutex::new(None));
    if let Front::Daemon(d) = &front {
        let admin = d.admin();
        let into = predicted_at_ramp.clone();
        timed.push(Event {
            at: plan.ramp,
            // The runner's loop must not wait on the admin listener.
            action: Box::new(move || {
                std::thread::spawn(move || {
                    *into.lock().expect("predicted lock") =
                        cluster::metric_sum(admin, PREDICTED_METRIC);
                });
            }),
        });
    }
    let mut change_at = None;
    let mut added = None;
    match scenario.change {
        Some(Change::Kill(share)) => {
            let at = plan.seconds.mul_f64(share);
            change_at = Some((at, addrs[0]));
            let nodes = nodes.clone();
            timed.push(Event {
                at,
                action: Box::new(move || drop(nodes.lock().expect("nodes lock")[0].take())),
            });
        }
        Some(Change::Add(share)) => {
            let at = plan.seconds.mul_f64(share);
            let newcomer = addrs[knobs.nodes];
            change_at = Some((at, newcomer));
            let action: Box<dyn FnOnce() + Send> = match &front {
                Front::Daemon(d) => {
                    let d = d.clone();
                    let all = addrs.clone();
                    Box::new(move || d.reload(&all))
                }
                Front::Peer(p) => {
                    let front_addr = p.addr;
                    let (tx, rx) = std::sync::mpsc::channel();
                    added = Some(rx);
                    // The runner's loop must not wait: the call goes on a thread of its own.
                    Box::new(move || {
                        std::thread::spawn(move || {
                            let _ = tx.send(add_worker(system, front_addr, newcomer));
                        });
                    })
                }
            };
            timed.push(Event { at, action });
        }
        None => {}
    }
    let client = client::client();
    let mut workload = Workload::new(scenario.shape.clone(), knobs.seed);
    let run = runner::drive(&client, front.addr(), &mut workload, plan, timed).await;
    let predicted = match &front {
        Front::Daemon(d) => {
            let start = *predicted_at_ramp.lock().expect("predicted lock");
            let admin = d.admin();
            let end =
                tokio::task::spawn_blocking(move || cluster::metric_sum(admin, PREDICTED_METRIC))
                    .await
                    .ok()
                    .flatten();
            start.zip(end).map(|(a, b)| b - a)
        }
        Front::Peer(_) => None,
    };
    drop(front);
    let note = added
        .map(|rx| {
            let status = rx.recv_timeout(Duration::from_secs(5)).unwrap_or_default();
            format!("adding the node answered {status}")
        })
        .unwrap_or_default();
    let seen = Seen {
        change_at,
        predicted,
        note,
    };
    Ok(finish(system, &nodes, &snapshot, run, plan, seen))
}

/// What a run saw besides its requests.
struct Seen {
    /// When the scenario's change happened, and to which node.
    change_at: Option<(Duration, SocketAddr)>,
    /// Prefix tokens the daemon predicted cached over the hold (ferrogate only).
    predicted: Option<f64>,
    note: String,
}

fn finish(
    system: System,
    nodes: &runner::Nodes,
    snapshot: &std::sync::Mutex<(u64, u64)>,
    run: Run,
    plan: runner::Plan,
    seen: Seen,
) -> Row {
    let Seen {
        change_at,
        predicted,
        note,
    } = seen;
    let end = runner::cache_tokens(nodes);
    let start = *snapshot.lock().expect("snapshot lock");
    let hits = (end.0.saturating_sub(start.0), end.1.saturating_sub(start.1));
    let summary = report::summarize(&system.label(), &run, plan.ramp, plan.seconds, hits);
    if std::env::var_os("BENCH_DEBUG").is_some() {
        debug_tenants(&system, &run, plan.ramp);
    }
    let changed_share = change_at.map(|(at, node)| {
        let after = report::per_node(&run.records, |r| r.sent_at >= at + Duration::from_secs(1));
        let total: usize = after.values().sum();
        100.0 * after.get(&node.to_string()).copied().unwrap_or(0) as f64 / total.max(1) as f64
    });
    Row {
        system,
        tenant_spread: tenant_spread(&run, plan.ramp),
        split: tenant_split(&run, plan.ramp, plan.seconds),
        summary,
        changed_share,
        index: predicted.map(|p| (p, hits.0)),
        note,
    }
}

fn row_json(row: &Row) -> Value {
    let s = &row.summary;
    json!({
        "system": row.system.label(),
        "sent": s.sent, "done": s.done, "rejected": s.rejected, "failed": s.failed, "cut": s.cut,
        "ttft_p50": s.ttft.0, "ttft_p90": s.ttft.1, "ttft_p99": s.ttft.2,
        "requests_per_sec": s.requests_per_sec, "output_tokens_per_sec": s.tokens_per_sec,
        "prefix_hit_rate": s.hit_rate,
        "tenant_spread": num(row.tenant_spread),
        "hot_tenant_ttft_p50": num(row.split.hot.0), "hot_tenant_ttft_p90": num(row.split.hot.1),
        "other_tenants_ttft_p50": num(row.split.others.0),
        "other_tenants_ttft_p90": num(row.split.others.1),
        "nodes_per_tenant": row.split.spread.iter()
            .map(|(t, n)| (t.to_string(), json!(n))).collect::<serde_json::Map<_, _>>(),
        "changed_node_share_percent": row.changed_share,
        "predicted_prefix_tokens": row.index.map(|(p, _)| num(p)),
        "hit_prefix_tokens": row.index.map(|(_, h)| h),
        "note": row.note,
    })
}

fn num(v: f64) -> Value {
    if v.is_finite() {
        json!(v)
    } else {
        Value::Null
    }
}

fn table(rows: &[Row]) -> String {
    let mut out = String::from(
        "| system | done/sent | failed/cut | req/s | TTFT p50 | TTFT p90 | TTFT p99 | prefix hit | nodes per tenant | changed node's share | predicted cached / hit |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in rows {
        let s = &r.summary;
        out.push_str(&format!(
            "| {} | {}/{} | {}/{} | {:.2} | {} | {} | {} | {:.0}% | {} | {} | {} |\n",
            r.system.label(),
            s.done,
            s.sent,
            s.failed,
            s.cut,
            s.requests_per_sec,
            secs(s.ttft.0),
            secs(s.ttft.1),
            secs(s.ttft.2),
            100.0 * s.hit_rate,
            if r.tenant_spread.is_nan() {
                "–".to_string()
            } else {
                format!("{:.1}", r.tenant_spread)
            },
            r.changed_share
                .map_or("".to_string(), |p| format!("{p:.0}%")),
            index_cell(r.index),
        ));
    }
    out
}

/// Predicted cached prefix tokens over what the nodes hit (1.00× = the index told the truth).
fn index_cell(index: Option<(f64, u64)>) -> String {
    match index {
        Some((p, h)) if p.is_finite() && h > 0 => {
            format!(
                "{:.2}× ({:.2} M / {:.2} M)",
                p / h as f64,
                p / 1e6,
                h as f64 / 1e6
            )
        }
        _ => "–".to_string(),
    }
}

/// The hot tenant's TTFT against the other tenants', and the nodes that served them.
fn split_table(rows: &[Row]) -> String {
    let mut out = String::from(
        "| system | hot tenant TTFT p50 | hot p90 | other tenants TTFT p50 | others p90 | hot tenant's nodes | nodes per other tenant |\n\
         |---|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in rows {
        let sp = &r.split;
        let others: Vec<f64> = sp
            .spread
            .iter()
            .filter(|(t, _)| **t != HOT_TENANT)
            .map(|(_, n)| *n as f64)
            .collect();
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} |\n",
            r.system.label(),
            secs(sp.hot.0),
            secs(sp.hot.1),
            secs(sp.others.0),
            secs(sp.others.1),
            sp.spread
                .get(&HOT_TENANT)
                .map_or("–".to_string(), |n| n.to_string()),
            if others.is_empty() {
                "–".to_string()
            } else {
                format!("{:.1}", others.iter().sum::<f64>() / others.len() as f64)
            },
        ));
    }
    out
}

/// ferrogate's figure over the peer's (TTFT: how many times lower ferrogate's is); with `hot`,
/// the hot tenant's and the other tenants' TTFT too.
fn ratios(rows: &[Row], hot: bool) -> Vec<Value> {
    let Some(ours) = rows
        .iter()
        .find(|r| r.system == System::Ferrogate("cache_aware"))
    else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for peer in rows
        .iter()
        .filter(|r| matches!(r.system, System::SglangRouter | System::VllmRouter(_)))
    {
        let (o, p) = (&ours.summary, &peer.summary);
        let (os, ps) = (&ours.split, &peer.split);
        let v = json!({
            "peer": peer.system.label(),
            "requests_per_sec": num(o.requests_per_sec / p.requests_per_sec),
            "ttft_p50_peer_over_ours": num(p.ttft.0 / o.ttft.0),
            "ttft_p90_peer_over_ours": num(p.ttft.1 / o.ttft.1),
            "ttft_p99_peer_over_ours": num(p.ttft.2 / o.ttft.2),
            "prefix_hit_points": num(100.0 * (o.hit_rate - p.hit_rate)),
            "hot_tenant_ttft_p90_peer_over_ours": num(ps.hot.1 / os.hot.1),
            "other_tenants_ttft_p90_peer_over_ours": num(ps.others.1 / os.others.1),
        });
        println!(
            "ferrogate cache_aware vs {}: req/s {:.2}×, TTFT p50 {:.2}× / p90 {:.2}× / p99 {:.2}× (peer's over ours: above 1 = ferrogate lower), prefix hit {:+.0} points",
            peer.system.label(),
            o.requests_per_sec / p.requests_per_sec,
            p.ttft.0 / o.ttft.0,
            p.ttft.1 / o.ttft.1,
            p.ttft.2 / o.ttft.2,
            100.0 * (o.hit_rate - p.hit_rate)
        );
        if hot {
            println!(
                "  hot tenant TTFT p50 {:.2}× / p90 {:.2}×, other tenants TTFT p50 {:.2}× / p90 {:.2}× (peer's over ours)",
                ps.hot.0 / os.hot.0,
                ps.hot.1 / os.hot.1,
                ps.others.0 / os.others.0,
                ps.others.1 / os.others.1,
            );
        }
        out.push(v);
    }
    out
}

/// ferrogate cache_aware fed by KV events against the same policy on its approximate index:
/// TTFT as the exact mode's over the approximate's (below 1 = the events helped), hits, and how
/// far each index's prediction was from what the nodes hit.
fn exact_over_approximate(rows: &[Row]) -> Value {
    let find = |s: System| rows.iter().find(|r| r.system == s);
    let (Some(exact), Some(approx)) = (
        find(System::FerrogateKvEvents),
        find(System::Ferrogate("cache_aware")),
    ) else {
        return Value::Null;
    };
    let (e, a) = (&exact.summary, &approx.summary);
    let accuracy = |r: &Row| r.index.map(|(p, h)| num(p / h.max(1) as f64));
    println!(
        "ferrogate cache_aware with KV events over without: TTFT p50 {:.2}× / p90 {:.2}× (below 1 = the events helped), prefix hit {:+.0} points; predicted cached / hit {} with them, {} without",
        e.ttft.0 / a.ttft.0,
        e.ttft.1 / a.ttft.1,
        100.0 * (e.hit_rate - a.hit_rate),
        index_cell(exact.index),
        index_cell(approx.index),
    );
    json!({
        "ttft_p50": num(e.ttft.0 / a.ttft.0),
        "ttft_p90": num(e.ttft.1 / a.ttft.1),
        "prefix_hit_points": num(100.0 * (e.hit_rate - a.hit_rate)),
        "predicted_over_hit_exact": accuracy(exact),
        "predicted_over_hit_approximate": accuracy(approx),
    })
}

pub async fn peers(knobs: &Knobs) {
    let kv = daemon_takes_kv_events();
    let wanted: Vec<String> = std::env::var("BENCH_PEER_SCENARIOS")
        .ok()
        .map(|v| v.split(',').map(str::to_string).collect())
        .unwrap_or_default();
    let wanted_systems: Vec<String> = std::env::var("BENCH_PEER_SYSTEMS")
        .ok()
        .map(|v| v.split(',').map(str::to_string).collect())
        .unwrap_or_default();
    let mut systems = vec![
        System::Ferrogate("round_robin"),
        System::Ferrogate("cache_aware"),
    ];
    if kv {
        systems.push(System::FerrogateKvEvents);
    }
    systems.extend([System::SglangRouter, System::VllmRouter("cache_aware")]);
    println!(
        "\n## peers: ferrogate against sglang-router 0.3.2 and vllm-router 0.1.17\n\n\
         {} nodes × max_num_seqs {}, {} tenants × {}-token system prompts, cache {} blocks/node, \
         prefill {} tok/s, decode {} ms, output {}–{} tokens, {} s per run (figures over the \
         last 60%), seed {}. ferrogate with KV events: {}\n",
        knobs.nodes,
        knobs.max_num_seqs,
        knobs.tenants,
        knobs.system_tokens,
        knobs.node_shape().cache_blocks,
        knobs.prefill,
        knobs.decode_ms,
        knobs.output_min,
        knobs.output_max,
        knobs.seconds,
        knobs.seed,
        if kv {
            "yes"
        } else {
            "skipped, the daemon's config does not accept `kv_events` yet"
        }
    );
    let mut out = Vec::new();
    for scenario in scenarios(knobs) {
        if !wanted.is_empty() && !wanted.iter().any(|w| w == scenario.name) {
            continue;
        }
        println!("### {}: {}\n", scenario.name, scenario.title);
        let mut rows = Vec::new();
        let mut these = systems.clone();
        if scenario.name == "saturation" {
            these.push(System::VllmRouter("kv_aware"));
        }
        if !wanted_systems.is_empty() {
            these.retain(|s| wanted_systems.iter().any(|w| w == s.key()));
        }
        for system in these {
            match run_one(knobs, &scenario, system).await {
                Ok(row) => {
                    eprintln!("  done: {} / {}", scenario.name, system.label());
                    rows.push(row);
                }
                Err(e) => {
                    eprintln!("  {} / {} failed: {e}", scenario.name, system.label());
                    println!(
                        "({}: could not run: {})\n",
                        system.label(),
                        e.lines().next().unwrap_or("")
                    );
                }
            }
        }
        println!("{}", table(&rows));
        let hot = scenario.shape.hot_share > 0.0;
        if hot {
            println!("{}", split_table(&rows));
        }
        let ratios = ratios(&rows, hot);
        let exact = exact_over_approximate(&rows);
        println!();
        out.push(json!({
            "scenario": scenario.name,
            "title": scenario.title,
            "peak_rate": scenario.peak,
            "rows": rows.iter().map(row_json).collect::<Vec<_>>(),
            "ratios": ratios,
            "kv_events_over_approximate": exact,
        }));
    }
    let doc = json!({
        "knobs": {
            "nodes": knobs.nodes, "max_num_seqs": knobs.max_num_seqs, "tenants": knobs.tenants,
            "system_tokens": knobs.system_tokens, "cache_blocks": knobs.node_shape().cache_blocks,
            "prefill_tokens_per_sec": knobs.prefill, "decode_ms": knobs.decode_ms,
            "output_tokens": [knobs.output_min, knobs.output_max], "seconds": knobs.seconds,
            "seed": knobs.seed, "rate": knobs.peer_rate,
        },
        "ferrogate_kv_events": kv,
        "scenarios": out,
    });
    if let Ok(path) = std::env::var("BENCH_PEERS_JSON") {
        let path = Path::new(&path);
        match std::fs::write(path, serde_json::to_vec_pretty(&doc).unwrap_or_default()) {
            Ok(()) => println!("Results written to {}", path.display()),
            Err(e) => eprintln!("cannot write {}: {e}", path.display()),
        }
    }
}
