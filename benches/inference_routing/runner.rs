//! Drives one run: Poisson arrivals at the planned rate, each request a task on the pooled
//! client, finished turns fed back into their chats, timed events (snapshot, kill, add) fired on
//! schedule; at the end the requests still in flight are dropped and every finished one is
//! returned as a [`Record`].

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferrogate_sim::SimHandle;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::client::{self, HttpClient, Outcome, Status};
use super::workload::{rate_at, Workload};

/// The simulated nodes of a run; a slot is emptied when its node is killed.
pub type Nodes = Arc<Mutex<Vec<Option<SimHandle>>>>;

pub fn nodes(handles: Vec<SimHandle>) -> Nodes {
    Arc::new(Mutex::new(handles.into_iter().map(Some).collect()))
}

/// Prefix-cache (hit, query) tokens summed over the live nodes.
pub fn cache_tokens(nodes: &Nodes) -> (u64, u64) {
    let nodes = nodes.lock().expect("nodes lock");
    nodes.iter().flatten().fold((0, 0), |(h, q), n| {
        let s = n.stats();
        (
            h + s.prefix_cache_hit_tokens,
            q + s.prefix_cache_query_tokens,
        )
    })
}

/// The arrival schedule of a run.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    pub seconds: Duration,
    /// The rate ramps from `start_rate` to `peak_rate` over this, then holds.
    pub ramp: Duration,
    pub start_rate: f64,
    pub peak_rate: f64,
}

/// Something to do once, `at` into the run.
pub struct Event {
    pub at: Duration,
    pub action: Box<dyn FnOnce() + Send>,
}

/// One finished request.
#[derive(Debug, Clone)]
pub struct Record {
    pub sent_at: Duration,
    pub chat_id: Option<String>,
    pub outcome: Outcome,
}

impl Record {
    pub fn done_at(&self) -> Duration {
        self.sent_at + self.outcome.elapsed
    }

    pub fn ok(&self) -> bool {
        self.outcome.status == Status::Done
    }
}

/// What a run produced: finished requests, and when every request was sent.
pub struct Run {
    pub records: Vec<Record>,
    pub sent: Vec<Duration>,
}

struct Finished {
    chat: Option<usize>,
    user: String,
    record: Record,
}

pub async fn drive(
    client: &HttpClient,
    addr: SocketAddr,
    workload: &mut Workload,
    plan: Plan,
    mut events: Vec<Event>,
) -> Run {
    events.sort_by_key(|e| e.at);
    let mut events = events.into_iter().peekable();
    let (tx, mut rx) = mpsc::unbounded_channel::<Finished>();
    let mut tasks = JoinSet::new();
    let mut run = Run {
        records: Vec::new(),
        sent: Vec::new(),
    };
    let start = Instant::now();
    let end = start + plan.seconds;
    let mut next = start;
    loop {
        let event_at = events.peek().map(|e| start + e.at);
        let wake = event_at.map_or(next, |at| at.min(next)).min(end);
        tokio::select! {
            Some(done) = rx.recv() => {
                if let Some(chat) = done.chat {
                    let reply = done.record.ok().then(|| done.record.outcome.reply.clone());
                    workload.finish(chat, done.user, reply);
                }
                run.records.push(done.record);
            }
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            _ = tokio::time::sleep_until(wake) => {
                let now = Instant::now();
                if now >= end {
                    break;
                }
                if event_at.is_some_and(|at| now >= at) {
                    if let Some(event) = events.next() {
                        (event.action)();
                    }
                    continue;
                }
                if now < next {
                    continue;
                }
                let elapsed = now - start;
                let turn = workload.next_turn();
                run.sent.push(elapsed);
                let tx = tx.clone();
                let client = client.clone();
                tasks.spawn(async move {
                    let outcome = client::chat(&client, addr, turn.body, turn.chat_id.as_deref()).await;
                    let record = Record { sent_at: elapsed, chat_id: turn.chat_id, outcome };
                    let _ = tx.send(Finished { chat: turn.chat, user: turn.user, record });
                });
                let rate = rate_at(elapsed, plan.ramp, plan.start_rate, plan.peak_rate);
                next += workload.gap(rate);
            }
        }
    }
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
    while let Ok(done) = rx.try_recv() {
        run.records.push(done.record);
    }
    run
}
