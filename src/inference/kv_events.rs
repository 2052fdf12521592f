//! Exact cache state from an engine's KV-cache events (vLLM `--kv-events-config`): [`wire`]
//! decodes the published batches, [`block_hash`] hashes a prompt's tokens the way the engine
//! does, [`tokens`] keeps the block hashes of prompts' first messages as an engine tokenized
//! them, and [`NodeBlocks`] is what one node holds, as its events say. Batches carry sequence
//! numbers: a gap stops trusting the set until the missing batches are replayed; a replay that
//! fails, or a publisher silent while its node serves, falls back to the approximate index for
//! that node until the stream is whole again. The subscriber that feeds it is
//! [`crate::monitor::kv_events`].

pub mod block_hash;
pub mod tokens;
pub mod wire;

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

pub use wire::{Batch, Event};

/// Tokens per engine block until a node's events say (vLLM's default).
pub const DEFAULT_KV_BLOCK_SIZE: usize = 16;
/// Blocks kept per node at most (memory bound; an engine with more is trusted only for what
/// fits, and falls back once it overflows).
pub const MAX_NODE_BLOCKS: usize = 4 << 20;
/// Batches held while a replay is awaited.
const MAX_HELD_BATCHES: usize = 4_096;

/// Why a node's events are not trusted now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fallback {
    /// No batch received yet.
    Connecting,
    /// Batches were lost and could not be replayed.
    Gap,
    /// The publisher said nothing for a while although the node served requests.
    Silent,
    /// The stream could not be read (connection or decoding failed).
    Broken,
    /// More blocks than [`MAX_NODE_BLOCKS`].
    Overflow,
}

/// Where a node's event stream stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncState {
    /// Every batch since the start (or the last clear) applied: the set is exact.
    Exact,
    /// A gap was seen; batches from `from` are being replayed.
    Replaying { from: u64 },
    /// The approximate index decides for this node.
    Fallback(Fallback),
}

impl SyncState {
    /// The label of the state metric and status.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Exact => "exact",
            Self::Replaying { .. } => "replaying",
            Self::Fallback(Fallback::Connecting) => "connecting",
            Self::Fallback(Fallback::Gap) => "fallback_gap",
            Self::Fallback(Fallback::Silent) => "fallback_silent",
            Self::Fallback(Fallback::Broken) => "fallback_broken",
            Self::Fallback(Fallback::Overflow) => "fallback_overflow",
        }
    }
}

/// What applying a live batch asks of the subscriber.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// Applied (or an old duplicate, ignored).
    Done,
    /// Batches before this one are missing: replay from `from`.
    Replay { from: u64 },
}

/// The blocks one node holds according to its events.
#[derive(Debug)]
pub struct NodeBlocks {
    blocks: HashSet<u64>,
    /// The sequence number expected next.
    next_seq: Option<u64>,
    state: SyncState,
    /// Live batches that arrived after a gap, applied once the replay fills it.
    held: BTreeMap<u64, Vec<Event>>,
    last_batch: Option<Instant>,
    block_size: Option<usize>,
}

impl Default for NodeBlocks {
    fn default() -> Self {
        Self {
            blocks: HashSet::new(),
            next_seq: None,
            state: SyncState::Fallback(Fallback::Connecting),
            held: BTreeMap::new(),
            last_batch: None,
            block_size: None,
        }
    }
}

impl NodeBlocks {
    pub fn state(&self) -> SyncState {
        self.state
    }

    /// Whether routing may trust the set.
    pub fn is_exact(&self) -> bool {
        self.state == SyncState::Exact
    }

    pub fn len(&self) -> usize {
        self.blocks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.blocks.is_empty()
    }

    /// Tokens per block, as the engine's stores said.
    pub fn block_size(&self) -> Option<usize> {
        self.block_size
    }

    pub fn last_batch(&self) -> Option<Instant> {
        self.last_batch
    }

    /// How many leading blocks of `hashes` the node holds.
    pub fn matched(&self, hashes: &[u64]) -> usize {
        hashes
            .iter()
            .take_while(|h| self.blocks.contains(h))
            .count()
    }

    fn apply_events(&mut self, events: &[Event]) {
        for event in events {
            match event {
                Event::Stored { hashes, block_size } => {
                    if let Some(size) = block_size {
                        self.block_size = Some(*size);
                    }
                    self.blocks.extend(hashes.iter().copied());
                }
                Event::Removed { hashes } => {
                    for h in hashes {
                        self.blocks.remove(h);
                    }
                }
                Event::Cleared => self.blocks.clear(),
            }
        }
        if self.blocks.len() > MAX_NODE_BLOCKS {
            self.blocks.clear();
            self.state = SyncState::Fallback(Fallback::Overflow);
        }
    }

    /// Whether the set was whole up to the last batch (so a replay can make it whole again).
    fn trusted_before_gap(&self) -> bool {
        matches!(
            self.state,
            SyncState::Exact | SyncState::Fallback(Fallback::Silent)
        )
    }

    /// A batch from the live stream.
    pub fn live(&mut self, batch: Batch, now: Instant) -> Applied {
        self.last_batch = Some(now);
        let expected = self.next_seq;
        match self.state {
            SyncState::Replaying { from } => {
                if batch.seq >= from && self.held.len() < MAX_HELD_BATCHES {
                    self.held.insert(batch.seq, batch.events);
                }
                return Applied::Done;
            }
            SyncState::Fallback(Fallback::Connecting) if expected.is_none() => {
                // The first batch seen: the stream starts here. What the node held before it is
                // unknown unless the replay socket still has it from 0.
                if batch.seq > 0 {
                    self.held.insert(batch.seq, batch.events);
                    self.state = SyncState::Replaying { from: 0 };
                    return Applied::Replay { from: 0 };
                }
                self.state = SyncState::Exact;
            }
            _ => {}
        }
        match expected {
            // Numbering starts again: the publisher restarted, and its engine with an empty
            // cache (a late duplicate is never 0: a stream joined late replays from 0 first).
            Some(next) if batch.seq == 0 && next > 0 => {
                self.blocks.clear();
                self.held.clear();
                self.state = SyncState::Exact;
            }
            Some(next) if batch.seq < next => return Applied::Done,
            // A set not trusted anyway (a failed replay, a broken stream) stays untrusted
            // until a clear: a replay now would only fill part of it.
            Some(next) if batch.seq > next && self.trusted_before_gap() => {
                self.held.insert(batch.seq, batch.events);
                self.state = SyncState::Replaying { from: next };
                return Applied::Replay { from: next };
            }
            _ => {}
        }
        self.apply_events(&batch.events);
        self.next_seq = Some(batch.seq + 1);
        let cleared = batch.events.contains(&Event::Cleared);
        match self.state {
            // The publisher speaks again without a gap: nothing was missed.
            SyncState::Fallback(Fallback::Silent) => self.state = SyncState::Exact,
            // Everything before a clear is gone: from here the set is whole again.
            SyncState::Fallback(Fallback::Gap | Fallback::Broken) if cleared => {
                self.state = SyncState::Exact;
            }
            _ => {}
        }
        Applied::Done
    }

    /// The batches a replay returned (from `from`, in order). Restores exactness when they
    /// and the held live batches join without a gap; otherwise falls back.
    pub fn replayed(&mut self, from: u64, batches: Vec<Batch>, now: Instant) -> SyncState {
        let mut next = from;
        let starts_clean = batches.first().is_some_and(|b| b.seq == from) || batches.is_empty();
        if !starts_clean {
            return self.fall_back(Fallback::Gap);
        }
        if from == 0 {
            self.blocks.clear();
        }
        for batch in batches {
            if batch.seq < next {
                continue;
            }
            if batch.seq > next {
                return self.fall_back(Fallback::Gap);
            }
            self.apply_events(&batch.events);
            self.held.remove(&batch.seq);
            next = batch.seq + 1;
        }
        let held = std::mem::take(&mut self.held);
        for (seq, events) in held {
            if seq < next {
                continue;
            }
            if seq > next {
                return self.fall_back(Fallback::Gap);
            }
            self.apply_events(&events);
            next = seq + 1;
        }
        self.next_seq = Some(next);
        self.last_batch = Some(now);
        if !matches!(self.state, SyncState::Fallback(Fallback::Overflow)) {
            self.state = SyncState::Exact;
        }
        self.state
    }

    /// Stops trusting the set and forgets it (a later replay from the start rebuilds it).
    pub fn fall_back(&mut self, why: Fallback) -> SyncState {
        self.state = SyncState::Fallback(why);
        self.held.clear();
        self.next_seq = None;
        self.blocks.clear();
        self.state
    }

    /// A new connection to the publisher after a broken one: what was missed meanwhile is
    /// unknown, so the stream starts over as on joining (a replay from 0 when the first batch
    /// is not 0).
    pub fn reconnected(&mut self) {
        if self.state == SyncState::Fallback(Fallback::Broken) {
            self.fall_back(Fallback::Connecting);
        }
    }

    /// The publisher has been silent for `silence` while its node served requests.
    pub fn silent_while_serving(&mut self, silence: Duration, now: Instant) -> bool {
        let quiet = self
            .last_batch
            .is_none_or(|at| now.saturating_duration_since(at) >= silence);
        if quiet && self.is_exact() {
            self.state = SyncState::Fallback(Fallback::Silent);
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(seq: u64, hashes: &[u64]) -> Batch {
        Batch {
            seq,
            events: vec![Event::Stored {
                hashes: hashes.to_vec(),
                block_size: Some(16),
            }],
        }
    }

    fn removed(seq: u64, hashes: &[u64]) -> Batch {
        Batch {
            seq,
            events: vec![Event::Removed {
                hashes: hashes.to_vec(),
            }],
        }
    }

    #[test]
    fn events_build_the_set_and_a_clear_empties_it() {
        let now = Instant::now();
        let mut node = NodeBlocks::default();
        assert!(!node.is_exact());
        assert_eq!(node.live(stored(0, &[1, 2, 3]), now), Applied::Done);
        assert!(node.is_exact());
        assert_eq!(node.matched(&[1, 2, 3, 4]), 3);
        assert_eq!(node.live(removed(1, &[3]), now), Applied::Done);
        assert_eq!(node.matched(&[1, 2, 3]), 2);
        assert_eq!(node.block_size(), Some(16));
        let cleared = Batch {
            seq: 2,
            events: vec![Event::Cleared],
        };
        node.live(cleared, now);
        assert!(node.is_empty());
        assert!(node.is_exact(), "a clear is news, not a loss");
        // An old duplicate changes nothing.
        node.live(stored(1, &[9]), now);
        assert_eq!(node.matched(&[9]), 0);
    }

    #[test]
    fn a_gap_stops_trusting_and_a_failed_replay_falls_back() {
        let now = Instant::now();
        let mut node = NodeBlocks::default();
        node.live(stored(0, &[1]), now);
        assert_eq!(node.live(stored(3, &[4]), now), Applied::Replay { from: 1 });
        assert_eq!(node.state(), SyncState::Replaying { from: 1 });
        assert!(!node.is_exact());
        // The replay socket no longer has 1: it starts at 2.
        let state = node.replayed(1, vec![stored(2, &[3])], now);
        assert_eq!(state, SyncState::Fallback(Fallback::Gap));
        assert_eq!(state.as_str(), "fallback_gap");
        assert!(node.is_empty());
        // Later batches are not trusted, until the engine clears its cache; a further gap
        // asks no replay of a set that is partial anyway.
        node.live(stored(5, &[6]), now);
        assert_eq!(node.live(stored(7, &[8]), now), Applied::Done);
        assert!(!node.is_exact());
        let cleared = Batch {
            seq: 8,
            events: vec![
                Event::Cleared,
                Event::Stored {
                    hashes: vec![7],
                    block_size: None,
                },
            ],
        };
        node.live(cleared, now);
        assert!(node.is_exact());
        assert_eq!(node.matched(&[7]), 1);
        assert_eq!(node.matched(&[6]), 0);
    }

    #[test]
    fn replayed_events_restore_the_exact_set() {
        let now = Instant::now();
        let mut node = NodeBlocks::default();
        node.live(stored(0, &[1]), now);
        node.live(stored(3, &[4]), now);
        node.live(removed(4, &[1]), now);
        let state = node.replayed(1, vec![stored(1, &[2]), stored(2, &[3])], now);
        assert_eq!(state, SyncState::Exact);
        assert_eq!(node.matched(&[2, 3, 4]), 3);
        assert_eq!(
            node.matched(&[1]),
            0,
            "the held removal applied after the replay"
        );
        node.live(stored(5, &[5]), now);
        assert_eq!(node.matched(&[5]), 1);
    }

    #[test]
    fn a_restarted_publisher_and_a_reconnection_start_over() {
        let now = Instant::now();
        let mut node = NodeBlocks::default();
        node.live(stored(0, &[1]), now);
        node.live(stored(1, &[2]), now);
        // The engine restarted: numbering from 0 again, its cache empty.
        assert_eq!(node.live(stored(0, &[3]), now), Applied::Done);
        assert!(node.is_exact());
        assert_eq!(node.matched(&[1]), 0);
        assert_eq!(node.matched(&[3]), 1);
        // A broken stream, then a new connection that first hears batch 4: replay from 0.
        node.fall_back(Fallback::Broken);
        node.reconnected();
        assert_eq!(node.state(), SyncState::Fallback(Fallback::Connecting));
        assert_eq!(node.live(stored(4, &[5]), now), Applied::Replay { from: 0 });
        let replay: Vec<Batch> = (0..5).map(|s| stored(s, &[s + 10])).collect();
        assert_eq!(node.replayed(0, replay, now), SyncState::Exact);
        assert_eq!(node.matched(&[10, 11, 12, 13, 14]), 5);
        // A gap is not forgiven by reconnecting.
        node.fall_back(Fallback::Gap);
        node.reconnected();
        assert_eq!(node.state(), SyncState::Fallback(Fallback::Gap));
    }

    #[test]
    fn joining_late_replays_from_the_start_and_silence_falls_back() {
        let t0 = Instant::now();
        let mut node = NodeBlocks::default();
        assert_eq!(node.live(stored(7, &[8]), t0), Applied::Replay { from: 0 });
        let replay: Vec<Batch> = (0..7).map(|s| stored(s, &[s + 100])).collect();
        assert_eq!(node.replayed(0, replay, t0), SyncState::Exact);
        assert_eq!(node.matched(&[100]), 1);
        assert_eq!(node.matched(&[8]), 1);
        let later = t0 + Duration::from_secs(30);
        assert!(node.silent_while_serving(Duration::from_secs(10), later));
        assert_eq!(node.state(), SyncState::Fallback(Fallback::Silent));
        // It speaks again in sequence: nothing was lost.
        node.live(stored(8, &[9]), later);
        assert!(node.is_exact());
    }
}
