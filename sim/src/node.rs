//! One node's shared state: configuration, faults, prefix cache, batch slots and counters. The
//! batch is a fair (FIFO) semaphore of `max_num_seqs` permits; a request holds a [`Slot`] while it
//! runs and a [`WaitTicket`] while it queues, and both give their gauges back when dropped, so a
//! request abandoned at any point leaves no trace in `running` or `waiting`. Prefill is one GPU's
//! compute: prefills of concurrent requests run one after another ([`Node::reserve_prefill`]), so a
//! node's prompt throughput is `prefill_tokens_per_sec` however many requests are in its batch.
//! Every change to the prefix cache is published as a KV event batch when the node has a
//! [`Publisher`].

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use http::HeaderMap;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Duration, Instant};

use super::block_hash::{block_hashes, none_hash, Digest};
use super::config::SimConfig;
use super::faults::Faults;
use super::kv_events::{BlockStored, KvEvent, Publisher};
use super::prefix_cache::{Lease, PrefixCache};
use super::stats::{Counters, SimStats};

/// Locks a mutex, ignoring poisoning (every critical section leaves the data consistent).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Shared state of one simulated node.
#[derive(Debug)]
pub struct Node {
    pub cfg: SimConfig,
    faults: Mutex<Faults>,
    cache: Mutex<PrefixCache>,
    slots: Arc<Semaphore>,
    counters: Mutex<Counters>,
    serial: AtomicU64,
    /// When the prefills already scheduled end (the GPU's compute is busy until then).
    prefill_busy_until: Mutex<Option<Instant>>,
    /// Sent back as `X-Sim-Node` on completions (the bound address), so a client can tell which
    /// node served it.
    pub label: String,
    /// The first block's parent hash (from `cfg.hash_seed`).
    none_hash: Digest,
    /// Where cache changes are published.
    publisher: Option<Publisher>,
}

/// Why a request was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueFull;

/// How a finished request ended, for the counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Served { completion_tokens: u32 },
    Cancelled,
    Killed,
}

impl Node {
    pub fn new(cfg: SimConfig) -> Arc<Self> {
        Node::labelled(cfg, String::new(), None)
    }

    /// A node that names itself `label` on its completions and publishes its cache changes to
    /// `publisher`.
    pub fn labelled(cfg: SimConfig, label: String, publisher: Option<Publisher>) -> Arc<Self> {
        Arc::new(Node {
            none_hash: none_hash(&cfg.hash_seed),
            publisher,
            faults: Mutex::new(cfg.faults.clone()),
            cache: Mutex::new(PrefixCache::new(cfg.cache_blocks)),
            slots: Arc::new(Semaphore::new(cfg.max_num_seqs)),
            counters: Mutex::new(Counters::new(&cfg.models)),
            serial: AtomicU64::new(0),
            prefill_busy_until: Mutex::new(None),
            label,
            cfg,
        })
    }

    /// Schedules `work` of prefill after the prefills already scheduled and returns when it ends:
    /// the batch shares one GPU, so concurrent prefills queue for its compute (decode steps are
    /// not modelled as competing with them).
    pub fn reserve_prefill(&self, work: Duration) -> Instant {
        let now = Instant::now();
        let mut busy = lock(&self.prefill_busy_until);
        let start = busy.map_or(now, |until| until.max(now));
        let end = start + work;
        *busy = Some(end);
        end
    }

    pub fn serves(&self, model: &str) -> bool {
        self.cfg.models.iter().any(|m| m == model)
    }

    pub fn faults(&self) -> Faults {
        lock(&self.faults).clone()
    }

    pub fn set_faults(&self, faults: Faults) {
        *lock(&self.faults) = faults;
    }

    /// A number unique to this node, for response ids.
    pub fn next_serial(&self) -> u64 {
        self.serial.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Counts a completion request (before its body is read) and remembers its headers.
    pub fn record_request(&self, headers: &HeaderMap) {
        let mut seen: BTreeMap<String, String> = BTreeMap::new();
        for (name, value) in headers {
            let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
            seen.entry(name.as_str().to_string())
                .and_modify(|v| {
                    v.push_str(", ");
                    v.push_str(&value);
                })
                .or_insert(value);
        }
        let mut c = lock(&self.counters);
        c.totals.requests += 1;
        c.last_request_headers = seen;
    }

    /// Counts a completion request for a model this node serves.
    pub fn record_model_request(&self, model: &str) {
        lock(&self.counters).model(model).requests += 1;
    }

    pub fn count_bad_request(&self) {
        lock(&self.counters).totals.bad_requests += 1;
    }

    pub fn count_injected_error(&self) {
        lock(&self.counters).totals.injected_errors += 1;
    }

    /// Takes a batch slot now if one is free, else a place in the queue, else (queue at
    /// `max_waiting`) refuses and counts the rejection.
    pub fn enqueue(self: &Arc<Self>, model: &str) -> Result<Queued, QueueFull> {
        let mut c = lock(&self.counters);
        if let Ok(permit) = Arc::clone(&self.slots).try_acquire_owned() {
            c.model(model).running += 1;
            return Ok(Queued::Ready(self.slot(model, permit)));
        }
        if self.cfg.max_waiting.is_some_and(|max| c.waiting() >= max) {
            c.totals.rejected += 1;
            return Err(QueueFull);
        }
        c.model(model).waiting += 1;
        Ok(Queued::Waiting(WaitTicket {
            node: Arc::clone(self),
            model: model.to_string(),
            queued: true,
        }))
    }

    fn slot(self: &Arc<Self>, model: &str, permit: OwnedSemaphorePermit) -> Slot {
        Slot {
            node: Arc::clone(self),
            model: model.to_string(),
            _permit: permit,
            held_blocks: Vec::new(),
        }
    }

    /// Requests holding a slot now (the batch size that slows decoding).
    pub fn running(&self) -> usize {
        lock(&self.counters).running()
    }

    pub fn observe_ttft(&self, model: &str, seconds: f64) {
        lock(&self.counters).model(model).ttft.observe(seconds);
    }

    pub fn finish(&self, model: &str, prompt_tokens: u32, outcome: Outcome) {
        let mut c = lock(&self.counters);
        match outcome {
            Outcome::Served { completion_tokens } => {
                c.totals.served += 1;
                let m = c.model(model);
                m.success += 1;
                m.prompt_tokens += u64::from(prompt_tokens);
                m.generation_tokens += u64::from(completion_tokens);
            }
            Outcome::Cancelled => c.totals.cancelled += 1,
            Outcome::Killed => c.totals.killed += 1,
        }
    }

    /// KV cache usage (referenced blocks over capacity) and resident blocks.
    pub fn cache_usage(&self) -> (f64, usize) {
        let cache = lock(&self.cache);
        let usage = if cache.capacity() == 0 {
            0.0
        } else {
            cache.referenced() as f64 / cache.capacity() as f64
        };
        (usage, cache.len())
    }

    /// The bound KV event endpoints (PUB, replay), when the node publishes.
    pub fn kv_event_endpoints(&self) -> Option<(String, Option<String>)> {
        self.publisher
            .as_ref()
            .map(|p| (p.endpoint.clone(), p.replay_endpoint.clone()))
    }

    /// Chained block hashes of a prompt's full blocks.
    pub fn block_hashes(&self, tokens: &[u32]) -> Vec<u64> {
        block_hashes(&self.none_hash, tokens, self.cfg.block_tokens)
    }

    /// Drops the whole prefix cache (vLLM's `reset_prefix_cache`) and publishes
    /// `AllBlocksCleared`; `false` (and nothing dropped) while running requests hold blocks.
    pub fn reset_prefix_cache(&self) -> bool {
        let mut cache = lock(&self.cache);
        if !cache.clear() {
            return false;
        }
        if let Some(publisher) = &self.publisher {
            publisher.publish(&[KvEvent::AllCleared]);
        }
        true
    }

    /// The events of one lease: evictions first, then each run of newly stored blocks.
    fn lease_events(&self, lease: &Lease, hashes: &[u64], tokens: &[u32]) -> Vec<KvEvent> {
        let block = self.cfg.block_tokens;
        let mut events: Vec<KvEvent> = lease
            .evicted
            .iter()
            .map(|&hash| KvEvent::Removed(vec![hash]))
            .collect();
        let mut runs: Vec<(usize, usize)> = Vec::new();
        for &index in &lease.stored {
            match runs.last_mut() {
                Some((_, end)) if *end == index => *end += 1,
                _ => runs.push((index, index + 1)),
            }
        }
        for (start, end) in runs {
            events.push(KvEvent::Stored(BlockStored {
                block_hashes: hashes[start..end].to_vec(),
                parent_block_hash: start.checked_sub(1).map(|i| hashes[i]),
                token_ids: tokens[start * block..end * block].to_vec(),
                block_size: u32::try_from(block).unwrap_or(u32::MAX),
            }));
        }
        events
    }

    pub fn stats(&self) -> SimStats {
        let (usage, resident) = self.cache_usage();
        SimStats::build(&lock(&self.counters), usage, resident)
    }

    /// A copy of the counters (for `/metrics`).
    pub fn counters(&self) -> Counters {
        lock(&self.counters).clone()
    }
}

/// Where [`Node::enqueue`] put a request.
#[derive(Debug)]
pub enum Queued {
    Ready(Slot),
    Waiting(WaitTicket),
}

impl Queued {
    /// Waits (FIFO) for a batch slot.
    pub async fn slot(self) -> Option<Slot> {
        match self {
            Queued::Ready(slot) => Some(slot),
            Queued::Waiting(mut ticket) => {
                let permit = Arc::clone(&ticket.node.slots).acquire_owned().await.ok()?;
                {
                    let mut c = lock(&ticket.node.counters);
                    let m = c.model(&ticket.model);
                    m.waiting = m.waiting.saturating_sub(1);
                    m.running += 1;
                }
                ticket.queued = false;
                Some(ticket.node.slot(&ticket.model, permit))
            }
        }
    }
}

/// A place in the queue; leaving it (dropped) takes the request out of `waiting`.
#[derive(Debug)]
pub struct WaitTicket {
    node: Arc<Node>,
    model: String,
    /// Still counted in `waiting`.
    queued: bool,
}

impl Drop for WaitTicket {
    fn drop(&mut self) {
        if !self.queued {
            return;
        }
        let mut c = lock(&self.node.counters);
        let m = c.model(&self.model);
        m.waiting = m.waiting.saturating_sub(1);
    }
}

/// A batch slot; dropping it frees the slot and the request's cache blocks.
#[derive(Debug)]
pub struct Slot {
    node: Arc<Node>,
    model: String,
    _permit: OwnedSemaphorePermit,
    held_blocks: Vec<u64>,
}

impl Slot {
    /// Looks the prompt's tokens up in the prefix cache, references its blocks for as long as
    /// the slot lives, publishes what the cache stored and evicted, counts hits and queries (in
    /// tokens, like vLLM), and returns the cached tokens.
    pub fn lookup_prefix(&mut self, tokens: &[u32], prompt_tokens: u32) -> u32 {
        let block_tokens = self.node.cfg.block_tokens;
        let hashes = self.node.block_hashes(tokens);
        let lease = {
            let mut cache = lock(&self.node.cache);
            let lease = cache.acquire(&hashes);
            if let Some(publisher) = &self.node.publisher {
                // Under the cache lock: batches go out in the order the cache changed.
                publisher.publish(&self.node.lease_events(&lease, &hashes, tokens));
            }
            lease
        };
        let hit = u32::try_from(lease.hit_blocks * block_tokens)
            .unwrap_or(u32::MAX)
            .min(prompt_tokens);
        self.held_blocks = lease.held;
        let mut c = lock(&self.node.counters);
        let m = c.model(&self.model);
        m.prefix_hit_tokens += u64::from(hit);
        m.prefix_query_tokens += u64::from(prompt_tokens);
        hit
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        lock(&self.node.cache).release(&self.held_blocks);
        let mut c = lock(&self.node.counters);
        let m = c.model(&self.model);
        m.running = m.running.saturating_sub(1);
        // The permit drops after this, handing the slot to the next waiter.
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(max_num_seqs: usize, max_waiting: Option<usize>) -> Arc<Node> {
        Node::new(SimConfig {
            max_num_seqs,
            max_waiting,
            ..SimConfig::with_model("m")
        })
    }

    #[tokio::test]
    async fn slots_queue_and_gauges_follow_the_guards() {
        let node = node(1, Some(1));
        let Ok(Queued::Ready(first)) = node.enqueue("m") else {
            panic!("first request should run at once");
        };
        let Ok(second @ Queued::Waiting(_)) = node.enqueue("m") else {
            panic!("second request should wait");
        };
        assert_eq!(node.enqueue("m").err(), Some(QueueFull));
        let stats = node.stats();
        assert_eq!(
            (stats.running, stats.waiting, stats.totals.rejected),
            (1, 1, 1)
        );
        drop(first);
        let slot = second.slot().await.unwrap();
        let stats = node.stats();
        assert_eq!((stats.running, stats.waiting), (1, 0));
        drop(slot);
        assert_eq!(node.stats().running, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_prefills_share_the_gpu() {
        let node = node(4, None);
        let start = Instant::now();
        let first = node.reserve_prefill(Duration::from_secs(1));
        let second = node.reserve_prefill(Duration::from_secs(2));
        assert_eq!(first - start, Duration::from_secs(1));
        assert_eq!(
            second - start,
            Duration::from_secs(3),
            "waits for the first"
        );
        tokio::time::sleep(Duration::from_secs(10)).await;
        // An idle GPU starts a prefill at once.
        let later = Instant::now();
        assert_eq!(
            node.reserve_prefill(Duration::from_millis(5)) - later,
            Duration::from_millis(5)
        );
        assert_eq!(
            node.reserve_prefill(Duration::ZERO) - later,
            Duration::from_millis(5)
        );
    }

    #[tokio::test]
    async fn a_waiter_that_leaves_gives_back_its_place() {
        let node = node(1, None);
        let Ok(Queued::Ready(_running)) = node.enqueue("m") else {
            panic!("first request should run at once");
        };
        let waiting = node.enqueue("m").unwrap();
        assert_eq!(node.stats().waiting, 1);
        drop(waiting);
        assert_eq!(node.stats().waiting, 0);
    }

    #[tokio::test]
    async fn a_slot_holds_its_prompt_blocks_until_dropped() {
        let node = node(2, None);
        let Ok(Queued::Ready(mut slot)) = node.enqueue("m") else {
            panic!("should run at once");
        };
        let prompt: Vec<u32> = (0..64).collect();
        assert_eq!(slot.lookup_prefix(&prompt, 64), 0);
        let (usage, resident) = node.cache_usage();
        assert_eq!(resident, 4);
        assert!((usage - 4.0 / 2048.0).abs() < 1e-12);
        drop(slot);
        assert_eq!(node.cache_usage(), (0.0, 4));
        let Ok(Queued::Ready(mut again)) = node.enqueue("m") else {
            panic!("should run at once");
        };
        assert_eq!(again.lookup_prefix(&prompt, 64), 64);
        let stats = node.stats();
        assert_eq!(stats.prefix_cache_hit_tokens, 64);
        assert_eq!(stats.prefix_cache_query_tokens, 128);
    }
}
