//! The engine block hashes of prompts' first messages (a tenant's system prompt), asked of an
//! engine of the model once per distinct message and kept in a bounded cache: routing on exact
//! block ownership needs the prompt's tokens, and every request that starts with the same
//! message shares its leading blocks. A message not yet known is handed to the tokenizer (a
//! background service) and the request waits for it at most a small budget; past that it is
//! routed on the approximate index, and later requests find the hashes ready.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::{mpsc, Notify};

use crate::inference::request::LeadMessage;

/// Messages kept at most (least recently used dropped beyond).
pub const MAX_CACHED_MESSAGES: usize = 4_096;
/// A failed tokenization is not asked again before this.
pub const RETRY_FAILED_AFTER: Duration = Duration::from_secs(10);
/// A tokenization that never answered is asked again after this.
pub const PENDING_TIMEOUT: Duration = Duration::from_secs(10);
/// Tokenizations queued for the service at most (more are routed approximately).
pub const QUEUED_JOBS: usize = 256;

/// What is known of one message.
#[derive(Debug, Clone)]
enum Entry {
    Pending(Instant),
    /// Its full blocks' hashes and the block size they were cut at.
    Ready(Arc<[u64]>),
    Failed(Instant),
}

/// The cache and the way to the tokenizer.
#[derive(Debug, Default)]
struct Inner {
    entries: HashMap<u64, (Entry, u64)>,
    order: BTreeMap<u64, u64>,
    tick: u64,
    jobs: Option<mpsc::Sender<Arc<LeadMessage>>>,
}

/// The prompt-token cache of one upstream.
#[derive(Debug, Default)]
pub struct PromptTokens {
    inner: Mutex<Inner>,
    ready: Notify,
}

/// What [`PromptTokens::lookup`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    Ready(Arc<[u64]>),
    /// Asked for (now or before) and not answered yet.
    Pending,
    /// Not available (no tokenizer, a recent failure, a full queue).
    Unavailable,
}

impl PromptTokens {
    /// Installs (or removes) the way to the tokenizer service.
    pub fn connect(&self, jobs: Option<mpsc::Sender<Arc<LeadMessage>>>) {
        self.inner.lock().jobs = jobs;
    }

    /// Whether a tokenizer is connected.
    pub fn connected(&self) -> bool {
        self.inner
            .lock()
            .jobs
            .as_ref()
            .is_some_and(|j| !j.is_closed())
    }

    /// The hashes of `lead` if known; otherwise asks the tokenizer for them (once).
    pub fn lookup(&self, lead: &Arc<LeadMessage>, now: Instant) -> Lookup {
        let mut inner = self.inner.lock();
        inner.tick += 1;
        let tick = inner.tick;
        let known = inner.entries.get(&lead.key).map(|(e, t)| (e.clone(), *t));
        let retry = match known {
            Some((Entry::Ready(hashes), old)) => {
                inner.order.remove(&old);
                inner.order.insert(tick, lead.key);
                if let Some(slot) = inner.entries.get_mut(&lead.key) {
                    slot.1 = tick;
                }
                return Lookup::Ready(hashes);
            }
            Some((Entry::Pending(since), _))
                if now.saturating_duration_since(since) < PENDING_TIMEOUT =>
            {
                return Lookup::Pending
            }
            Some((Entry::Failed(at), _))
                if now.saturating_duration_since(at) < RETRY_FAILED_AFTER =>
            {
                return Lookup::Unavailable
            }
            Some((_, old)) => Some(old),
            None => None,
        };
        let Some(jobs) = inner.jobs.clone() else {
            return Lookup::Unavailable;
        };
        if jobs.try_send(lead.clone()).is_err() {
            return Lookup::Unavailable;
        }
        if let Some(old) = retry {
            inner.order.remove(&old);
        }
        inner.entries.insert(lead.key, (Entry::Pending(now), tick));
        inner.order.insert(tick, lead.key);
        while inner.entries.len() > MAX_CACHED_MESSAGES {
            let Some((_, key)) = inner.order.pop_first() else {
                break;
            };
            inner.entries.remove(&key);
        }
        Lookup::Pending
    }

    /// The hashes of `key`, if ready (never asks).
    pub fn ready(&self, key: u64) -> Option<Arc<[u64]>> {
        match self.inner.lock().entries.get(&key) {
            Some((Entry::Ready(hashes), _)) => Some(hashes.clone()),
            _ => None,
        }
    }

    /// The tokenizer's answer for `key`: its block hashes, or `None` when it failed.
    pub fn answer(&self, key: u64, hashes: Option<Vec<u64>>, now: Instant) {
        {
            let mut inner = self.inner.lock();
            if let Some(slot) = inner.entries.get_mut(&key) {
                slot.0 = match hashes {
                    Some(h) => Entry::Ready(h.into()),
                    None => Entry::Failed(now),
                };
            }
        }
        self.ready.notify_waiters();
    }

    /// Waits until `lead`'s hashes are ready, at most `budget`.
    pub async fn wait(&self, lead: &Arc<LeadMessage>, budget: Duration) -> Option<Arc<[u64]>> {
        let deadline = tokio::time::Instant::now() + budget;
        loop {
            let notified = self.ready.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            match self.lookup(lead, Instant::now()) {
                Lookup::Ready(hashes) => return Some(hashes),
                Lookup::Unavailable => return None,
                Lookup::Pending => {}
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lead(text: &str) -> Arc<LeadMessage> {
        Arc::new(LeadMessage::new("m", "system".into(), text.into()))
    }

    #[tokio::test]
    async fn asks_once_answers_waiters_and_remembers_failures() {
        let tokens = Arc::new(PromptTokens::default());
        let now = Instant::now();
        assert_eq!(
            tokens.lookup(&lead("a"), now),
            Lookup::Unavailable,
            "no tokenizer"
        );
        let (tx, mut rx) = mpsc::channel(4);
        tokens.connect(Some(tx));
        assert!(tokens.connected());
        assert_eq!(tokens.lookup(&lead("a"), now), Lookup::Pending);
        assert_eq!(tokens.lookup(&lead("a"), now), Lookup::Pending);
        let job = rx.recv().await.expect("one job");
        assert!(rx.try_recv().is_err(), "asked once");
        let waiter = {
            let tokens = tokens.clone();
            tokio::spawn(async move { tokens.wait(&lead("a"), Duration::from_secs(5)).await })
        };
        tokio::task::yield_now().await;
        tokens.answer(job.key, Some(vec![1, 2, 3]), now);
        assert_eq!(waiter.await.expect("join").as_deref(), Some(&[1, 2, 3][..]));
        assert_eq!(tokens.ready(job.key).as_deref(), Some(&[1, 2, 3][..]));
        // A failure is not asked again at once.
        tokens.lookup(&lead("b"), now);
        let job = rx.recv().await.expect("job b");
        tokens.answer(job.key, None, now);
        assert_eq!(tokens.lookup(&lead("b"), now), Lookup::Unavailable);
        let later = now + RETRY_FAILED_AFTER;
        assert_eq!(tokens.lookup(&lead("b"), later), Lookup::Pending);
        // A short budget gives up.
        assert_eq!(
            tokens.wait(&lead("c"), Duration::from_millis(10)).await,
            None
        );
    }
}
