//! The KV-event subscriber, a background service: for every server of an inference upstream
//! with `inference: { kv_events: tcp://… }` it keeps a ZMQ SUB connection to the engine's
//! publisher and applies each batch to the server's [`NodeBlocks`]; on a sequence gap it asks
//! the replay socket (`kv_events_replay`) for the missing batches, and when that fails, the
//! stream breaks, or the publisher is silent while its node serves, the node falls back to the
//! approximate index until its stream is whole again (a clean replay, or a cache clear). For
//! each such upstream it also runs the tokenizer: a prompt's first message is sent once to an
//! engine of the model (`POST /tokenize`, vLLM's own endpoint) and its block hashes, computed
//! as the engine computes them, go into the upstream's prompt-token cache.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use http::header::{CONTENT_TYPE, HOST, USER_AGENT};
use http::Request;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use zeromq::{DealerSocket, Socket, SocketRecv, SocketSend, SubSocket, ZmqMessage};

use crate::config::model::KvEvents;
use crate::inference::kv_events::block_hash::block_hashes;
use crate::inference::kv_events::tokens::QUEUED_JOBS;
use crate::inference::kv_events::wire::{self, Batch, END_OF_REPLAY};
use crate::inference::kv_events::{Applied, Fallback, DEFAULT_KV_BLOCK_SIZE};
use crate::inference::metrics::InferenceMetrics;
use crate::inference::request::LeadMessage;
use crate::pool::members::{Member, UpstreamPool};
use crate::runtime::SnapshotStore;

/// How often the service looks at the snapshot for servers to follow.
pub const KV_SERVICE_TICK: Duration = Duration::from_millis(500);
/// A publisher silent this long while its node served requests is not trusted.
pub const KV_SILENCE: Duration = Duration::from_secs(10);
/// Longest wait for a connection, a replay or a tokenization.
pub const KV_IO_TIMEOUT: Duration = Duration::from_secs(2);
/// Pause before reconnecting a broken stream.
const RECONNECT_BACKOFF: Duration = Duration::from_secs(1);
/// Largest `/tokenize` answer read.
const MAX_TOKENIZE_BODY: usize = 16 << 20;
/// Longest a replay may run (batches) before it is given up.
const MAX_REPLAY_BATCHES: usize = 100_000;

type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// The KV-event subscriber service.
pub struct KvEventSubscriber {
    snapshots: Arc<SnapshotStore>,
    metrics: Arc<InferenceMetrics>,
}

impl KvEventSubscriber {
    pub fn new(snapshots: Arc<SnapshotStore>, metrics: Arc<InferenceMetrics>) -> Self {
        Self { snapshots, metrics }
    }
}

/// One followed stream: a server's publisher.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct StreamKey {
    upstream: Arc<str>,
    address: Arc<str>,
    endpoints: KvEvents,
}

#[async_trait]
impl BackgroundService for KvEventSubscriber {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut streams: HashMap<StreamKey, JoinHandle<()>> = HashMap::new();
        let mut tokenizers: HashMap<Arc<str>, (Arc<UpstreamPool>, JoinHandle<()>)> = HashMap::new();
        let client = http_client();
        loop {
            let snapshot = self.snapshots.load();
            let mut wanted_streams = Vec::new();
            let mut wanted_tokenizers = Vec::new();
            for upstream in snapshot.upstreams() {
                let Some(inference) = &upstream.inference else {
                    continue;
                };
                let members = upstream.pool.members();
                let mut follows = false;
                for member in members.iter() {
                    let Some(endpoints) = &member.kv_events else {
                        continue;
                    };
                    follows = true;
                    let key = StreamKey {
                        upstream: upstream.name.clone(),
                        address: member.address.clone(),
                        endpoints: endpoints.clone(),
                    };
                    if streams.get(&key).is_none_or(JoinHandle::is_finished) {
                        let task =
                            tokio::spawn(follow(member.clone(), key.clone(), self.metrics.clone()));
                        streams.insert(key.clone(), task);
                    }
                    wanted_streams.push(key);
                }
                if !follows {
                    continue;
                }
                wanted_tokenizers.push(upstream.name.clone());
                let stale = tokenizers.get(&upstream.name).is_none_or(|(pool, task)| {
                    task.is_finished() || !Arc::ptr_eq(pool, &upstream.pool)
                });
                if stale || !upstream.pool.kv_tokens.connected() {
                    if let Some((_, task)) = tokenizers.remove(&upstream.name) {
                        task.abort();
                    }
                    let (jobs, queue) = mpsc::channel(QUEUED_JOBS);
                    upstream.pool.kv_tokens.connect(Some(jobs));
                    let task = tokio::spawn(tokenize_jobs(
                        upstream.pool.clone(),
                        inference.kv_hash_seed.clone(),
                        queue,
                        client.clone(),
                        self.metrics.clone(),
                        upstream.name.clone(),
                    ));
                    tokenizers.insert(upstream.name.clone(), (upstream.pool.clone(), task));
                }
            }
            streams.retain(|key, task| {
                let keep = wanted_streams.contains(key);
                if !keep {
                    task.abort();
                    self.metrics.kv_events_forget(&key.upstream, &key.address);
                }
                keep
            });
            tokenizers.retain(|name, (pool, task)| {
                let keep = wanted_tokenizers.contains(name);
                if !keep {
                    task.abort();
                    pool.kv_tokens.connect(None);
                }
                keep
            });
            drop(snapshot);
            tokio::select! {
                _ = tokio::time::sleep(KV_SERVICE_TICK) => {}
                _ = shutdown.changed() => break,
            }
        }
        for (_, task) in streams {
            task.abort();
        }
        for (_, (_, task)) in tokenizers {
            task.abort();
        }
    }
}

/// Follows one publisher until aborted: connects, applies batches, replays gaps, watches for
/// silence; reconnects after a broken stream.
async fn follow(member: Arc<Member>, key: StreamKey, metrics: Arc<InferenceMetrics>) {
    let publish = || {
        let (state, blocks) = {
            let kv = member.state.kv.lock();
            (kv.state(), if kv.is_exact() { kv.len() } else { 0 })
        };
        metrics.kv_events_state(&key.upstream, &key.address, state.as_str(), blocks);
    };
    loop {
        publish();
        let mut socket = SubSocket::new();
        let connected =
            tokio::time::timeout(KV_IO_TIMEOUT, socket.connect(&key.endpoints.endpoint))
                .await
                .map_err(|_| "no connection in time".to_string())
                .and_then(|r| r.map_err(|e| e.to_string()));
        let subscribed = match connected {
            Ok(()) => socket.subscribe("").await.map_err(|e| e.to_string()),
            Err(e) => Err(e),
        };
        if let Err(error) = subscribed {
            member.state.kv.lock().fall_back(Fallback::Broken);
            publish();
            tracing::debug!(upstream = %key.upstream, server = %key.address, %error, "cannot follow the server's KV-cache events; routing it by the approximate index");
            tokio::time::sleep(RECONNECT_BACKOFF).await;
            continue;
        }
        member.state.kv.lock().reconnected();
        publish();
        let mut served_at_last_batch = member.state.requests();
        loop {
            let received = tokio::time::timeout(Duration::from_secs(1), socket.recv()).await;
            let now = Instant::now();
            let message = match received {
                Ok(Ok(message)) => message,
                Ok(Err(error)) => {
                    member.state.kv.lock().fall_back(Fallback::Broken);
                    publish();
                    tracing::info!(upstream = %key.upstream, server = %key.address, %error, "the KV-cache event stream broke; routing the server by the approximate index");
                    break;
                }
                Err(_) => {
                    let served = member.state.requests() != served_at_last_batch;
                    if served && member.state.kv.lock().silent_while_serving(KV_SILENCE, now) {
                        publish();
                        tracing::info!(upstream = %key.upstream, server = %key.address, "the KV-cache event publisher is silent while the server serves; routing it by the approximate index");
                    }
                    continue;
                }
            };
            served_at_last_batch = member.state.requests();
            let Some(batch) = decode_live(&message) else {
                metrics.kv_events_batch(&key.upstream, &key.address, "undecodable");
                continue;
            };
            metrics.kv_events_batch(&key.upstream, &key.address, "live");
            let applied = member.state.kv.lock().live(batch, now);
            if let Applied::Replay { from } = applied {
                let state = match &key.endpoints.replay {
                    Some(endpoint) => match replay(endpoint, from).await {
                        Ok(batches) => {
                            metrics.kv_events_batch(&key.upstream, &key.address, "replayed");
                            member
                                .state
                                .kv
                                .lock()
                                .replayed(from, batches, Instant::now())
                        }
                        Err(error) => {
                            tracing::info!(upstream = %key.upstream, server = %key.address, %error, from, "could not replay missed KV-cache events; routing the server by the approximate index");
                            member.state.kv.lock().fall_back(Fallback::Gap)
                        }
                    },
                    None => member.state.kv.lock().fall_back(Fallback::Gap),
                };
                if !matches!(state, crate::inference::kv_events::SyncState::Exact) {
                    tracing::info!(upstream = %key.upstream, server = %key.address, state = state.as_str(), "KV-cache events missed");
                }
            }
            publish();
        }
        tokio::time::sleep(RECONNECT_BACKOFF).await;
    }
}

/// A live message `[topic, seq, payload]` (a publisher without a topic frame sends
/// `[seq, payload]`).
fn decode_live(message: &ZmqMessage) -> Option<Batch> {
    let frames: Vec<&Bytes> = message.iter().collect();
    let (seq, payload) = match frames.as_slice() {
        [_, seq, payload] => (seq, payload),
        [seq, payload] => (seq, payload),
        _ => return None,
    };
    wire::decode(wire::seq(seq)?, payload).ok()
}

/// Asks the replay socket for every batch from `from` on.
async fn replay(endpoint: &str, from: u64) -> Result<Vec<Batch>, String> {
    let exchange = async {
        let mut socket = DealerSocket::new();
        socket.connect(endpoint).await.map_err(|e| e.to_string())?;
        let request = ZmqMessage::try_from(vec![
            Bytes::new(),
            Bytes::copy_from_slice(&from.to_be_bytes()),
        ])
        .map_err(|e| format!("{e:?}"))?;
        socket.send(request).await.map_err(|e| e.to_string())?;
        let mut batches = Vec::new();
        loop {
            let message = socket.recv().await.map_err(|e| e.to_string())?;
            let frames: Vec<&Bytes> = message.iter().collect();
            let (seq, payload) = match frames.as_slice() {
                [_, seq, payload] | [seq, payload] => (*seq, *payload),
                _ => return Err("a replay message without seq and payload".to_string()),
            };
            if seq.as_ref() == END_OF_REPLAY {
                return Ok(batches);
            }
            let seq = wire::seq(seq).ok_or("a replay message with a bad seq")?;
            batches.push(wire::decode(seq, payload)?);
            if batches.len() > MAX_REPLAY_BATCHES {
                return Err("the replay does not end".to_string());
            }
        }
    };
    tokio::time::timeout(KV_IO_TIMEOUT, exchange)
        .await
        .map_err(|_| format!("no replay from {endpoint} within {KV_IO_TIMEOUT:?}"))?
}

fn http_client() -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(KV_IO_TIMEOUT));
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new()).build(connector)
}

/// Tokenizes the upstream's queued first messages, one at a time.
async fn tokenize_jobs(
    pool: Arc<UpstreamPool>,
    seed: String,
    mut jobs: mpsc::Receiver<Arc<LeadMessage>>,
    client: HttpClient,
    metrics: Arc<InferenceMetrics>,
    upstream: Arc<str>,
) {
    while let Some(lead) = jobs.recv().await {
        let answer = tokenize(&pool, &lead, &client).await;
        let now = Instant::now();
        match answer {
            Ok(tokens) => {
                let size = block_size(&pool);
                // The last token of a message may be cut differently when text follows it.
                let head = &tokens[..tokens.len().saturating_sub(1)];
                let hashes = block_hashes(&seed, head, size);
                metrics.kv_tokenized(&upstream, "ok");
                pool.kv_tokens.answer(lead.key, Some(hashes), now);
            }
            Err(error) => {
                metrics.kv_tokenized(&upstream, "failed");
                tracing::debug!(%upstream, %error, "could not tokenize a prompt's first message");
                pool.kv_tokens.answer(lead.key, None, now);
            }
        }
    }
}

/// The engines' block size: what their stores said, else vLLM's default.
fn block_size(pool: &UpstreamPool) -> usize {
    pool.members()
        .iter()
        .find_map(|m| m.state.kv.lock().block_size())
        .unwrap_or(DEFAULT_KV_BLOCK_SIZE)
}

/// `POST /tokenize` on a server of the message's model (all of a model's servers share its
/// tokenizer): the token ids of the message rendered alone, without a generation prompt.
async fn tokenize(
    pool: &UpstreamPool,
    lead: &LeadMessage,
    client: &HttpClient,
) -> Result<Vec<u32>, String> {
    let now = Instant::now();
    let members = pool.members();
    let member = members
        .iter()
        .filter(|m| m.state.available(now) && !m.drain)
        .find(|m| {
            m.served_models()
                .is_none_or(|models| models.contains(&lead.model))
        })
        .ok_or("no available server of the model")?;
    let body = serde_json::json!({
        "model": lead.model,
        "messages": [{"role": lead.role, "content": lead.content}],
        "add_generation_prompt": false,
    });
    let request = Request::post(format!("http://{}/tokenize", member.socket))
        .header(HOST, &*member.address)
        .header(CONTENT_TYPE, "application/json")
        .header(USER_AGENT, "ferrogate-tokenizer")
        .body(Full::new(Bytes::from(body.to_string())))
        .map_err(|e| e.to_string())?;
    let exchange = async {
        let response = client.request(request).await.map_err(|e| e.to_string())?;
        if !response.status().is_success() {
            return Err(format!("status {}", response.status().as_u16()));
        }
        let body = Limited::new(response.into_body(), MAX_TOKENIZE_BODY)
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        parse_tokens(&body)
    };
    tokio::time::timeout(KV_IO_TIMEOUT, exchange)
        .await
        .map_err(|_| "no answer in time".to_string())?
}

/// The `tokens` of a `/tokenize` answer.
fn parse_tokens(body: &[u8]) -> Result<Vec<u32>, String> {
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    value["tokens"]
        .as_array()
        .ok_or("no `tokens` in the answer")?
        .iter()
        .map(|t| {
            t.as_u64()
                .and_then(|t| u32::try_from(t).ok())
                .ok_or_else(|| "a token id is not a number".to_string())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_tokenize_answers_and_live_frames() {
        assert_eq!(
            parse_tokens(
                br#"{"count":3,"max_model_len":32768,"tokens":[1,5,2],"token_strs":null}"#
            ),
            Ok(vec![1, 5, 2])
        );
        assert!(parse_tokens(br#"{"tokens":[-1]}"#).is_err());
        assert!(parse_tokens(b"{}").is_err());
        let payload = {
            let mut out = Vec::new();
            let value = rmpv::Value::Array(vec![
                rmpv::Value::from(1.0),
                rmpv::Value::Array(vec![rmpv::Value::Array(vec![rmpv::Value::from(
                    "AllBlocksCleared",
                )])]),
            ]);
            rmpv::encode::write_value(&mut out, &value).expect("encode");
            out
        };
        let message = ZmqMessage::try_from(vec![
            Bytes::from_static(b"kv-events"),
            Bytes::copy_from_slice(&9u64.to_be_bytes()),
            Bytes::from(payload),
        ])
        .expect("frames");
        let batch = decode_live(&message).expect("a batch");
        assert_eq!(batch.seq, 9);
        assert_eq!(
            batch.events,
            vec![crate::inference::kv_events::Event::Cleared]
        );
    }
}
