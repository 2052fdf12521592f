//! The node's KV-event publisher, as vLLM's `ZmqEventPublisher` behaves: a bound PUB socket
//! sends every batch as `[topic, seq, payload]` with a sequence number from 0 up, and a bound
//! ROUTER answers a replay request `[b"", start]` with every buffered message from `start` on,
//! then the end marker. The request path never waits for ZMQ: [`Publisher::publish`] numbers and
//! buffers a batch under one lock and hands it to the sending task through a bounded channel; a
//! batch that finds the channel full is not sent live but stays in the replay buffer, so a
//! subscriber sees the gap and can fetch it.

use std::collections::VecDeque;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use zeromq::{PubSocket, RouterSocket, Socket, SocketRecv, SocketSend, ZmqMessage};

use super::wire::{encode_batch, frames, replay_start, KvEvent, END_OF_REPLAY};

/// Batches kept for replay unless set (vLLM's `buffer_steps`).
pub const DEFAULT_REPLAY_BUFFER: usize = 10_000;
/// The topic unless set (the one vLLM's example subscriber uses).
pub const DEFAULT_TOPIC: &str = "kv-events";
/// Batches waiting for the sending task at most.
const SEND_QUEUE: usize = 10_000;

/// Where and how a node publishes its KV-cache events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvEventsConfig {
    /// PUB endpoint to bind, e.g. `tcp://127.0.0.1:5557` (port 0: any free port).
    pub endpoint: String,
    /// ROUTER endpoint to bind for replay requests.
    pub replay_endpoint: Option<String>,
    pub topic: String,
    /// Batches kept for replay.
    pub replay_buffer: usize,
}

impl KvEventsConfig {
    /// Publishing on `endpoint` with the defaults.
    pub fn on(endpoint: &str) -> Self {
        KvEventsConfig {
            endpoint: endpoint.to_string(),
            replay_endpoint: None,
            topic: DEFAULT_TOPIC.to_string(),
            replay_buffer: DEFAULT_REPLAY_BUFFER,
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[derive(Debug)]
struct Sequenced {
    next_seq: u64,
    /// `(seq, payload)`, oldest first.
    buffer: VecDeque<(u64, Bytes)>,
}

/// A running publisher; dropping it stops its tasks and closes the sockets.
#[derive(Debug)]
pub struct Publisher {
    topic: String,
    capacity: usize,
    state: Arc<Mutex<Sequenced>>,
    live: mpsc::Sender<(u64, Bytes)>,
    /// The bound PUB endpoint (port resolved).
    pub endpoint: String,
    /// The bound replay endpoint (port resolved).
    pub replay_endpoint: Option<String>,
    tasks: Vec<JoinHandle<()>>,
}

fn zmq_error(what: &str, e: zeromq::ZmqError) -> io::Error {
    io::Error::other(format!("kv events: {what}: {e}"))
}

impl Publisher {
    /// Binds the sockets and starts the sending and replay tasks on the current runtime.
    pub async fn start(cfg: &KvEventsConfig) -> io::Result<Publisher> {
        let mut pub_socket = PubSocket::new();
        let endpoint = pub_socket
            .bind(&cfg.endpoint)
            .await
            .map_err(|e| zmq_error(&format!("cannot bind {}", cfg.endpoint), e))?
            .to_string();
        let state = Arc::new(Mutex::new(Sequenced {
            next_seq: 0,
            buffer: VecDeque::new(),
        }));
        let (live, queue) = mpsc::channel(SEND_QUEUE);
        let mut tasks = vec![tokio::spawn(send_loop(
            pub_socket,
            cfg.topic.clone(),
            queue,
        ))];
        let mut replay_endpoint = None;
        if let Some(replay) = &cfg.replay_endpoint {
            let mut router = RouterSocket::new();
            let bound = router
                .bind(replay)
                .await
                .map_err(|e| zmq_error(&format!("cannot bind {replay}"), e))?;
            replay_endpoint = Some(bound.to_string());
            tasks.push(tokio::spawn(replay_loop(router, Arc::clone(&state))));
        }
        Ok(Publisher {
            topic: cfg.topic.clone(),
            capacity: cfg.replay_buffer.max(1),
            state,
            live,
            endpoint,
            replay_endpoint,
            tasks,
        })
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Numbers, buffers and sends one batch (nothing when `events` is empty); returns its
    /// sequence number.
    pub fn publish(&self, events: &[KvEvent]) -> Option<u64> {
        if events.is_empty() {
            return None;
        }
        let ts = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        let payload = Bytes::from(encode_batch(ts, events, 0));
        let mut state = lock(&self.state);
        let seq = state.next_seq;
        state.next_seq += 1;
        if state.buffer.len() >= self.capacity {
            state.buffer.pop_front();
        }
        state.buffer.push_back((seq, payload.clone()));
        // Under the lock, so the channel carries batches in sequence order.
        if self.live.try_send((seq, payload)).is_err() {
            tracing::warn!(
                seq,
                "ferrogate-sim: kv event batch not sent live (queue full)"
            );
        }
        Some(seq)
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

async fn send_loop(mut socket: PubSocket, topic: String, mut queue: mpsc::Receiver<(u64, Bytes)>) {
    while let Some((seq, payload)) = queue.recv().await {
        let [topic, seq, payload] = frames(&topic, seq, &payload);
        let Ok(message) = ZmqMessage::try_from(vec![
            Bytes::from(topic),
            Bytes::from(seq),
            Bytes::from(payload),
        ]) else {
            continue;
        };
        if let Err(e) = socket.send(message).await {
            tracing::warn!(error = %e, "ferrogate-sim: kv event publish failed");
        }
    }
}

async fn replay_loop(mut router: RouterSocket, state: Arc<Mutex<Sequenced>>) {
    loop {
        let request = match router.recv().await {
            Ok(request) => request.into_vec(),
            Err(e) => {
                tracing::debug!(error = %e, "ferrogate-sim: replay socket receive failed");
                continue;
            }
        };
        let Some((identity, rest)) = request.split_first() else {
            continue;
        };
        let rest: Vec<&[u8]> = rest.iter().map(|f| f.as_ref()).collect();
        let Some(start) = replay_start(&rest) else {
            tracing::debug!("ferrogate-sim: ignoring a malformed replay request");
            continue;
        };
        let wanted: Vec<(u64, Bytes)> = lock(&state)
            .buffer
            .iter()
            .filter(|(seq, _)| *seq >= start)
            .cloned()
            .collect();
        let replies = wanted
            .into_iter()
            .map(|(seq, payload)| (Bytes::copy_from_slice(&seq.to_be_bytes()), payload))
            .chain(std::iter::once((
                Bytes::from_static(&END_OF_REPLAY),
                Bytes::new(),
            )));
        for (seq, payload) in replies {
            let frames = vec![identity.clone(), Bytes::new(), seq, payload];
            let Ok(message) = ZmqMessage::try_from(frames) else {
                break;
            };
            if let Err(e) = router.send(message).await {
                tracing::debug!(error = %e, "ferrogate-sim: replay answer failed");
                break;
            }
        }
    }
}
