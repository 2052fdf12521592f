//! Choosing among an inference upstream's servers: session affinity (rendezvous hash with a load
//! bound), `metrics` (router in-flight counts blended with the scraped queue and KV-cache use,
//! weighted by the reading's age) and `cache_aware` (predicted queue wait plus uncached prefix
//! work, through the pool's prefix index, with bounded load so hot prefixes spill).

use std::sync::Arc;
use std::time::Instant;

use super::super::members::{Member, UpstreamPool};
use crate::config::model::{Balance, Inference};
use crate::inference::affinity::{load_bound, rendezvous};
use crate::inference::prefix::{self, CostModel};
use crate::inference::request::InferenceFacts;

/// Load bound factor for affinity and cache-aware spill (a server above this × mean is skipped).
pub const BALANCE_FACTOR: f64 = 1.25;
/// Score added per unit of KV-cache use under `metrics` (a full cache counts as this many
/// queued requests).
const KV_PRESSURE: f64 = 2.0;

/// Why a server was chosen (the `reason` label of the decisions metric).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    Affinity,
    AffinityOverflow,
    PrefixHit,
    LeastCost,
    LeastLoad,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Affinity => "affinity",
            Self::AffinityOverflow => "affinity_overflow",
            Self::PrefixHit => "prefix_hit",
            Self::LeastCost => "least_cost",
            Self::LeastLoad => "least_load",
        }
    }
}

/// A choice: the index into the eligible list, why, and the prefix blocks predicted cached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Choice {
    pub index: usize,
    pub reason: Reason,
    pub matched_blocks: usize,
}

/// Whether `member` serves `model`; a server whose list is not known yet may.
pub fn serves(member: &Member, model: &str) -> bool {
    member
        .served_models()
        .is_none_or(|models| models.iter().any(|m| m == model))
}

/// Requests ahead of a new one on `member`: the router's own in-flight count, raised toward the
/// scraped running + waiting (other clients' work) in proportion to the reading's freshness.
pub fn load(member: &Member, settings: &Inference, with_signals: bool, now: Instant) -> f64 {
    let inflight = f64::from(member.state.inflight());
    if !with_signals {
        return inflight;
    }
    match member.state.signals.load(now, settings.signal_max_age) {
        Some((reading, weight)) => {
            let reported = reading.running + reading.waiting;
            inflight + weight * (reported - inflight).max(0.0)
        }
        None => inflight,
    }
}

/// Chooses among `eligible` for an inference request. `None` only when empty. Every eligible
/// server has room, except under `cache_aware` with a prompt to index: there a full server that
/// holds the prompt's prefix and is within the load bound is chosen (the request then waits in
/// the queue for it), because under saturation every server is full by turns and taking
/// whichever frees first would recompute each prefix on a random node, evicting the others'
/// prefixes from its cache (throughput collapses toward round robin's). A full server that
/// holds nothing of the prompt is never waited for while another has room.
pub fn choose(
    pool: &UpstreamPool,
    balance: &Balance,
    settings: &Inference,
    facts: &InferenceFacts,
    eligible: &[&Arc<Member>],
    ticket: u64,
    now: Instant,
) -> Option<Choice> {
    if eligible.is_empty() {
        return None;
    }
    let with_signals = matches!(balance, Balance::Metrics | Balance::CacheAware);
    let loads: Vec<f64> = eligible
        .iter()
        .map(|m| load(m, settings, with_signals, now) / f64::from(m.current_weight().max(1)))
        .collect();
    let cache_aware = matches!(balance, Balance::CacheAware) && !facts.hashes.is_empty();
    if cache_aware {
        let candidates: Vec<prefix::Candidate> = eligible
            .iter()
            .zip(&loads)
            .map(|(m, load)| prefix::Candidate {
                server: m.id,
                load: *load,
            })
            .collect();
        let room: Vec<bool> = eligible.iter().map(|m| super::has_room(m)).collect();
        let cost = CostModel::default();
        let mut index = pool.prefix.lock();
        let (mut server, mut matched) = prefix::choose(&index, &facts.hashes, &candidates, &cost)?;
        let has_room = |server: u64| {
            eligible
                .iter()
                .zip(&room)
                .any(|(m, room)| m.id == server && *room)
        };
        if matched == 0 && !has_room(server) {
            // A miss gains nothing by waiting: the cheapest server with room, if any.
            let open: Vec<prefix::Candidate> = candidates
                .iter()
                .zip(&room)
                .filter(|(_, room)| **room)
                .map(|(c, _)| *c)
                .collect();
            if let Some(open_choice) = prefix::choose(&index, &facts.hashes, &open, &cost) {
                (server, matched) = open_choice;
            }
        }
        if has_room(server) {
            // Only a request that goes now teaches the index; a waiting one chooses again.
            index.insert(&facts.hashes, server);
        }
        drop(index);
        let position = eligible.iter().position(|m| m.id == server)?;
        let reason = if matched > 0 {
            Reason::PrefixHit
        } else {
            Reason::LeastCost
        };
        return Some(Choice {
            index: position,
            reason,
            matched_blocks: matched,
        });
    }
    if let (true, Some(key)) = (settings.affinity, facts.session.as_deref()) {
        let servers: Vec<(u64, f64)> = eligible
            .iter()
            .map(|m| m.id)
            .zip(loads.iter().copied())
            .collect();
        let bound = load_bound(loads.iter().copied(), BALANCE_FACTOR);
        let (index, first) = rendezvous(key, &servers, bound)?;
        let reason = if first {
            Reason::Affinity
        } else {
            Reason::AffinityOverflow
        };
        return Some(Choice {
            index,
            reason,
            matched_blocks: 0,
        });
    }
    let score = |i: usize| -> f64 {
        let kv = if with_signals {
            eligible[i]
                .state
                .signals
                .load(now, settings.signal_max_age)
                .and_then(|(r, w)| r.kv_usage.map(|kv| kv * w))
                .unwrap_or(0.0)
        } else {
            0.0
        };
        loads[i] + KV_PRESSURE * kv
    };
    // Lowest score; ties rotate by ticket so equal servers share the work.
    let n = eligible.len();
    let start = (ticket % n as u64) as usize;
    let index = (0..n)
        .map(|k| (start + k) % n)
        .min_by(|a, b| score(*a).total_cmp(&score(*b)))?;
    Some(Choice {
        index,
        reason: Reason::LeastLoad,
        matched_blocks: 0,
    })
}
