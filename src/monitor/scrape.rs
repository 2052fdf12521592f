//! The node scraper, a background service: every `inference.refresh`, for every upstream with an
//! `inference` section in the current snapshot, each server is asked for its models
//! (`GET /v1/models`, when the models are discovered rather than configured) and its load
//! (`GET /metrics`, when the engine exports metrics), and the answers are stored in the server's
//! long-lived [`NodeSignals`](crate::inference::signals::NodeSignals). A failed read keeps the previous
//! reading, which fades by age where it is used. A slow server is never asked twice at once. An
//! upstream with `tls` is asked over https with its own settings (the health checker's).

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use http::header::{CONNECTION, HOST, USER_AGENT};
use http::Request;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::rt::TokioIo;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use tokio::net::TcpStream;

use crate::config::model::{Balance, Inference};
use crate::inference::metrics::InferenceMetrics;
use crate::inference::metrics_text::parse_load;
use crate::inference::openai::parse_models;
use crate::inference::signals::Load;

use super::health::tls_connect;
use super::periodic;
use crate::pool::members::Member;
use crate::pool::prefix::ReadingEffect;
use crate::pool::server::ServerState;
use crate::runtime::{SnapshotStore, UpstreamRuntime};
use crate::tls::upstream::ServerTls;

/// Longest sleep between two looks at the snapshot (so new upstreams are noticed soon).
pub const SCRAPER_TICK: Duration = Duration::from_millis(250);
/// Longest wait for one answer (shorter when `refresh` is).
pub const DEFAULT_SCRAPE_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest `/v1/models` or `/metrics` body read; a larger one is a failed scrape.
pub const DEFAULT_SCRAPE_MAX_BODY: usize = 4 << 20;

/// The node scraper service.
pub struct NodeScraper {
    snapshots: Arc<SnapshotStore>,
    metrics: Arc<InferenceMetrics>,
}

impl NodeScraper {
    pub fn new(snapshots: Arc<SnapshotStore>, metrics: Arc<InferenceMetrics>) -> Self {
        Self { snapshots, metrics }
    }
}

#[async_trait]
impl BackgroundService for NodeScraper {
    async fn start(&self, shutdown: ShutdownWatch) {
        periodic::every_upstream(
            &self.snapshots,
            SCRAPER_TICK,
            shutdown,
            |u| u.inference.as_ref().map(|i| i.refresh),
            |u| scrape_upstream(u, &self.metrics),
        )
        .await;
    }
}

/// What to ask one server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Plan {
    models: bool,
    metrics: bool,
    timeout: Duration,
}

/// What a server of `inference` is asked: its models unless configured, its metrics if the
/// engine has them.
fn plan(inference: &Inference, member: &Member) -> Plan {
    Plan {
        models: member.models.is_none(),
        metrics: inference.engine.has_metrics(),
        timeout: inference.refresh.min(DEFAULT_SCRAPE_TIMEOUT),
    }
}

/// One round for every member of `upstream`, each on its own task.
fn scrape_upstream(upstream: &Arc<UpstreamRuntime>, metrics: &Arc<InferenceMetrics>) {
    let Some(inference) = &upstream.inference else {
        return;
    };
    let members = upstream.pool.members();
    let addresses: Vec<&str> = members.iter().map(|m| &*m.address).collect();
    metrics.servers(&upstream.name, &addresses);
    for member in members.iter() {
        let plan = plan(inference, member);
        if !(plan.models || plan.metrics) || !member.state.signals.begin_scrape() {
            continue;
        }
        let claim = Claim(member.state.clone());
        tokio::spawn(scrape_member(
            claim,
            member.clone(),
            upstream.clone(),
            plan,
            metrics.clone(),
        ));
    }
    if matches!(upstream.balance, Balance::CacheAware) {
        let spread = upstream.pool.prefix_spread(Instant::now());
        metrics.spread(
            &upstream.name,
            spread.mean,
            spread.max as f64,
            spread.prefixes as f64,
        );
    }
}

/// Asks one server what `plan` says (both at once) and records the answers; a failed read keeps
/// the last one.
async fn scrape_member(
    _claim: Claim,
    member: Arc<Member>,
    runtime: Arc<UpstreamRuntime>,
    plan: Plan,
    metrics: Arc<InferenceMetrics>,
) {
    let Some(inference) = &runtime.inference else {
        return;
    };
    let engine = inference.engine;
    let tls = runtime.tls.as_deref();
    let upstream = &runtime.name;
    let fetch = |wanted: bool, path: &'static str| {
        let member = &member;
        async move {
            match wanted {
                true => Some(get(member, path, plan.timeout, tls).await),
                false => None,
            }
        }
    };
    let (models, load) = tokio::join!(
        fetch(plan.models, "/v1/models"),
        fetch(plan.metrics, "/metrics")
    );
    let now = Instant::now();
    let signals = &member.state.signals;
    let server = &*member.address;
    if let Some(answer) = models {
        let list = answer
            .and_then(|body| parse_models(&body).ok_or_else(|| "not a model list".to_string()));
        match list {
            Ok(list) => signals.set_models(list, now),
            Err(error) => {
                metrics.scrape_failed(upstream, server, "models");
                tracing::debug!(%upstream, server, %error, "could not read the server's models; keeping the last list");
            }
        }
    }
    if let Some(answer) = load {
        let reading = answer.and_then(|body| {
            parse_load(engine, &String::from_utf8_lossy(&body))
                .ok_or_else(|| format!("no {} load metrics in the answer", engine.name()))
        });
        match reading {
            Ok(reading) => {
                let previous = signals.last_load().map(|(load, _)| load);
                signals.set_load(reading, now);
                metrics.reading(upstream, server, &reading, previous.as_ref());
                learn(
                    &runtime,
                    &member,
                    &reading,
                    previous.as_ref(),
                    &metrics,
                    now,
                );
            }
            Err(error) => {
                metrics.scrape_failed(upstream, server, "metrics");
                tracing::debug!(%upstream, server, %error, "could not read the server's metrics; keeping the last reading");
            }
        }
    }
}

/// Feeds a reading to the pool's `cache_aware` model and publishes what the model says.
fn learn(
    runtime: &UpstreamRuntime,
    member: &Member,
    reading: &Load,
    previous: Option<&Load>,
    metrics: &InferenceMetrics,
    now: Instant,
) {
    let configured = runtime.inference.as_ref().and_then(|i| i.cache_tokens);
    let pool = &runtime.pool;
    let server = &*member.address;
    match pool.learn_from_reading(member, reading, previous, configured) {
        ReadingEffect::Nothing => {}
        ReadingEffect::Cleared => {
            metrics.index_corrected(&runtime.name, server, "clear");
            tracing::info!(upstream = %runtime.name, server, "prefix-cache counters went back: the server restarted; forgetting what it held");
        }
        ReadingEffect::Corrected(c) => {
            let direction = if c.reported_rate < c.predicted_rate {
                "shrink"
            } else {
                "grow"
            };
            metrics.index_corrected(&runtime.name, server, direction);
            tracing::debug!(upstream = %runtime.name, server, predicted = c.predicted_rate, reported = c.reported_rate, blocks = c.capacity_blocks, "cache model corrected");
        }
    }
    let model = pool.server_model(member, now);
    metrics.server_model(
        &runtime.name,
        server,
        model.index_tokens,
        model.cache_tokens,
        model.prefill_rate,
    );
}

/// The scrape claim on one server, released when the scrape ends however it ends.
struct Claim(Arc<ServerState>);

impl Drop for Claim {
    fn drop(&mut self) {
        self.0.signals.end_scrape();
    }
}

/// `GET path` on the member over a fresh HTTP/1.1 connection (https with `tls`): the body of a
/// 2xx answer.
async fn get(
    member: &Member,
    path: &str,
    timeout: Duration,
    tls: Option<&ServerTls>,
) -> Result<Bytes, String> {
    let exchange = async {
        let tcp = TcpStream::connect(member.socket)
            .await
            .map_err(|e| format!("GET {path}: connect: {e}"))?;
        let _ = tcp.set_nodelay(true);
        match tls {
            None => request(TokioIo::new(tcp), member, path).await,
            Some(tls) => {
                let stream = tls_connect(tls, &member.address, tcp)
                    .await
                    .map_err(|e| format!("GET {path}: {e}"))?;
                request(TokioIo::new(stream), member, path).await
            }
        }
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| format!("GET {path}: no answer within {timeout:?}"))?
}

/// One `GET path` (`Connection: close`) on a connection; the body of a 2xx answer.
async fn request<I>(io: I, member: &Member, path: &str) -> Result<Bytes, String>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| format!("GET {path}: {e}"))?;
    // Drives the connection; stopped when this exchange ends however it ends.
    let driver = AbortOnDrop(tokio::spawn(connection));
    let request = Request::get(path)
        .header(HOST, &*member.address)
        .header(CONNECTION, "close")
        .header(USER_AGENT, "ferrogate-scraper")
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("GET {path}: {e}"))?;
    let result = async {
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("GET {path}: {e}"))?;
        let status = response.status();
        if !status.is_success() {
            return Err(format!("GET {path}: status {}", status.as_u16()));
        }
        Limited::new(response.into_body(), DEFAULT_SCRAPE_MAX_BODY)
            .collect()
            .await
            .map(|body| body.to_bytes())
            .map_err(|e| format!("GET {path}: reading the body: {e}"))
    }
    .await;
    drop(driver);
    result
}

/// A spawned task that ends when this handle is dropped.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::model::{Engine, Models, Server};
    use crate::pool::members::UpstreamPool;
    use std::net::SocketAddr;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    fn inference(engine: Engine, models: Models) -> Inference {
        Inference {
            engine,
            models,
            refresh: Duration::from_millis(300),
            max_body: 1024,
            affinity: false,
            signal_max_age: Duration::from_secs(30),
            prefill_tokens_per_sec: None,
            cache_tokens: None,
            kv_hash_seed: "0".into(),
        }
    }

    fn pool(
        servers: &[(SocketAddr, Option<Vec<String>>)],
        models: Option<&[String]>,
    ) -> UpstreamPool {
        let pool = UpstreamPool::new("gpu");
        let servers: Vec<Server> = servers
            .iter()
            .map(|(socket, own)| Server {
                address: format!("gpu.test:{}", socket.port()),
                socket: *socket,
                weight: 1,
                max_inflight: None,
                drain: false,
                models: own.clone(),
                kv_events: None,
            })
            .collect();
        pool.set_configured(&servers, false, models);
        pool
    }

    #[test]
    fn plans_follow_engine_and_model_source() {
        let socket: SocketAddr = ([127, 0, 0, 1], 9).into();
        let other: SocketAddr = ([127, 0, 0, 1], 10).into();
        let discover = pool(&[(socket, None), (other, Some(vec!["own".into()]))], None);
        let members = discover.members();
        let vllm = inference(Engine::Vllm, Models::Discover);
        assert_eq!(
            plan(&vllm, &members[0]),
            Plan {
                models: true,
                metrics: true,
                timeout: Duration::from_millis(300)
            }
        );
        assert!(
            !plan(&vllm, &members[1]).models,
            "a server's own list is not asked for"
        );
        let listed = vec!["m".to_string()];
        let configured = pool(&[(socket, None)], Some(&listed));
        let ollama = inference(Engine::Ollama, Models::List(listed.clone()));
        let p = plan(&ollama, &configured.members()[0]);
        assert!(!p.models && !p.metrics);
        let mut slow = inference(Engine::Sglang, Models::Discover);
        slow.refresh = Duration::from_secs(60);
        assert_eq!(plan(&slow, &members[0]).timeout, DEFAULT_SCRAPE_TIMEOUT);
    }

    /// A server answering every connection with `answer` after reading the request head; the
    /// heads it saw are sent back on the channel.
    async fn serve(answer: Vec<u8>) -> (SocketAddr, tokio::sync::mpsc::UnboundedReceiver<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = tx.send(String::from_utf8_lossy(&head).into_owned());
                let _ = socket.write_all(&answer).await;
                let _ = socket.shutdown().await;
            }
        });
        (addr, rx)
    }

    async fn fetch(answer: &[u8]) -> (Result<Bytes, String>, String) {
        let (addr, mut heads) = serve(answer.to_vec()).await;
        let pool = pool(&[(addr, None)], None);
        let member = pool.members()[0].clone();
        let result = get(&member, "/metrics", Duration::from_secs(5), None).await;
        let head = heads.recv().await.unwrap_or_default();
        (result, head)
    }

    #[tokio::test]
    async fn reads_every_body_framing() {
        let (body, head) = fetch(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello").await;
        assert_eq!(body.as_deref(), Ok(&b"hello"[..]));
        let head = head.to_ascii_lowercase();
        assert!(head.starts_with("get /metrics http/1.1\r\n"), "{head}");
        assert!(head.contains("host: gpu.test:"), "{head}");
        assert!(head.contains("connection: close"), "{head}");
        let (body, _) = fetch(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
        )
        .await;
        assert_eq!(body.as_deref(), Ok(&b"abcde"[..]));
        let (body, _) = fetch(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nto the end").await;
        assert_eq!(body.as_deref(), Ok(&b"to the end"[..]));
    }

    #[tokio::test]
    async fn refuses_errors_and_oversized_bodies() {
        let (body, _) = fetch(b"HTTP/1.1 503 Busy\r\nContent-Length: 0\r\n\r\n").await;
        assert!(body.is_err_and(|e| e.contains("503")));
        let mut big = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n".to_vec();
        big.resize(big.len() + DEFAULT_SCRAPE_MAX_BODY + 1, b'x');
        let (body, _) = fetch(&big).await;
        assert!(body.is_err(), "a body over the cap is a failed scrape");
        let closed = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = closed.local_addr().expect("addr");
        drop(closed);
        let pool = pool(&[(addr, None)], None);
        let member = pool.members()[0].clone();
        assert!(get(&member, "/metrics", Duration::from_secs(5), None)
            .await
            .is_err());
    }

    #[tokio::test]
    async fn a_silent_server_times_out() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let held = tokio::spawn(async move {
            let accepted = listener.accept().await;
            tokio::time::sleep(Duration::from_secs(10)).await;
            drop(accepted);
        });
        let pool = pool(&[(addr, None)], None);
        let member = pool.members()[0].clone();
        let result = get(&member, "/metrics", Duration::from_millis(200), None).await;
        assert!(result.is_err_and(|e| e.contains("no answer")));
        held.abort();
    }
}
