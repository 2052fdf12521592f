//! Choosing among an inference upstream's servers: session affinity (rendezvous hash with a load
//! bound), `metrics` (router in-flight counts blended with the scraped queue and KV-cache use,
//! weighted by the reading's age) and `cache_aware` (the cost model of
//! [`crate::inference::prefix::cost`]: predicted wait for a slot plus the prefill of what the
//! server does not hold, over the pool's prefix index; see [`choose`]).

use std::sync::Arc;
use std::time::Instant;

use super::super::members::{Member, UpstreamPool};
use crate::config::model::{Balance, Inference};
use crate::inference::affinity::{load_bound, rendezvous};
use crate::inference::kv_events::DEFAULT_KV_BLOCK_SIZE;
use crate::inference::node_model::{DEFAULT_PREFILL_TOKENS_PER_SEC, MIN_PREFILL_SAMPLE_TOKENS};
use crate::inference::prefix::cost::DEFAULT_BATCH_SLOTS;
use crate::inference::prefix::{self, NodeView, PrefixModel, TOKENS_PER_BLOCK};
use crate::inference::request::InferenceFacts;

/// Load bound factor for session affinity (a server above this × mean is skipped).
pub const BALANCE_FACTOR: f64 = 1.25;
/// Score added per unit of KV-cache use under `metrics` (a full cache counts as this many
/// queued requests).
const KV_PRESSURE: f64 = 2.0;
/// Prefill seconds already on a server below which a first token still teaches its prefill
/// rate (as a share of the request's own prefill).
const IDLE_PREFILL_SHARE: f64 = 0.1;

/// Why a server was chosen (the `reason` label of the decisions metric).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    Affinity,
    AffinityOverflow,
    PrefixHit,
    /// A second (or further) server given a prefix whose holders had no free slot.
    Replicate,
    LeastCost,
    LeastLoad,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Affinity => "affinity",
            Self::AffinityOverflow => "affinity_overflow",
            Self::PrefixHit => "prefix_hit",
            Self::Replicate => "replicate",
            Self::LeastCost => "least_cost",
            Self::LeastLoad => "least_load",
        }
    }
}

/// A choice: the index into the eligible list, why, the prefix blocks predicted cached, and
/// what the cost model predicted.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Choice {
    pub index: usize,
    pub reason: Reason,
    pub matched_blocks: usize,
    /// `cache_aware`: what it predicted for the chosen server.
    pub predicted: Option<Predicted>,
}

/// What `cache_aware` predicted for a request on its server.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Predicted {
    /// Prompt tokens the server holds.
    pub cached_tokens: f64,
    /// Prompt tokens it prefills.
    pub uncached_tokens: f64,
    pub prompt_tokens: f64,
    /// Seconds of its own prefill.
    pub prefill_secs: f64,
    /// Seconds waiting for a batch slot.
    pub queue_secs: f64,
    /// It found the server's slots and prefill free, with enough to prefill to time the rate.
    pub times_prefill: bool,
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

/// The batch slots of `member`: what its engine showed, no more than `max_inflight` (the router
/// sends no more), else the default.
pub fn slots(member: &Member, learned: Option<f64>) -> f64 {
    let limit = member.max_inflight.map(f64::from);
    match (learned, limit) {
        (Some(learned), Some(limit)) => learned.min(limit),
        (Some(slots), None) | (None, Some(slots)) => slots,
        (None, None) => DEFAULT_BATCH_SLOTS,
    }
    .max(1.0)
}

/// The prefill rate `cache_aware` assumes for `member`: configured, else learned, else default.
fn prefill_rate(settings: &Inference, learned: f64) -> f64 {
    settings
        .prefill_tokens_per_sec
        .map_or(learned, |rate| rate as f64)
}

/// `cache_aware` for a request with a prompt to index. Every eligible server has room, except
/// with a queue to wait in: there a full server holding part of the prompt may be chosen (the
/// request then waits for it) when the cost model says waiting beats recomputing elsewhere; a
/// full server holding nothing of the prompt is never waited for while another has room.
fn cache_aware(
    pool: &UpstreamPool,
    settings: &Inference,
    facts: &InferenceFacts,
    eligible: &[&Arc<Member>],
    ticket: u64,
    now: Instant,
) -> Option<Choice> {
    let room: Vec<bool> = eligible.iter().map(|m| super::has_room(m)).collect();
    let full = room.iter().filter(|r| !**r).count();
    // Requests already waiting in the router's queue are ahead of this one on the full servers.
    let queued_share = if full > 0 {
        f64::from(pool.queued()) / full as f64
    } else {
        0.0
    };
    let model = pool.prefix.lock();
    let key = facts.hashes.first().copied().unwrap_or(0);
    let fallback_rate = settings
        .prefill_tokens_per_sec
        .map_or(DEFAULT_PREFILL_TOKENS_PER_SEC, |r| r as f64);
    let exact = facts
        .lead
        .as_ref()
        .and_then(|lead| pool.kv_tokens.ready(lead.key));
    let views: Vec<NodeView> = eligible
        .iter()
        .zip(&room)
        .map(|(m, room)| {
            let estimates = m.state.model.estimates(fallback_rate, now);
            let approximate = (model.index.matched(&facts.hashes, m.id) as f64 * TOKENS_PER_BLOCK)
                .min(facts.prompt_tokens);
            let cached_tokens = match (&exact, &m.kv_events) {
                (Some(hashes), Some(_)) => exact_cached(m, hashes, approximate),
                _ => approximate,
            };
            NodeView {
                server: m.id,
                ahead: load(m, settings, true, now) + if *room { 0.0 } else { queued_share },
                slots: slots(m, estimates.batch_slots),
                service_secs: estimates.service_secs,
                prefill_rate: prefill_rate(settings, estimates.prefill_rate),
                prefill_backlog_secs: estimates.prefill_backlog_secs,
                cached_tokens,
                holder_rank: (cached_tokens > 0.0)
                    .then(|| model.spread.rank(key, m.id, now))
                    .flatten(),
                free_cache_tokens: free_tokens(&model.index, m.id),
                prefixes_held: model.spread.held_by(m.id, now),
                arrival_rate: estimates.arrival_rate,
            }
        })
        .collect();
    drop(model);
    // Waiting for a full server only pays off for what it holds.
    let mut allowed: Vec<bool> = views
        .iter()
        .zip(&room)
        .map(|(v, room)| *room || v.cached_tokens > 0.0)
        .collect();
    if !allowed.iter().any(|a| *a) {
        allowed = vec![true; views.len()];
    }
    let mut decision = prefix::choose(&views, &allowed, facts.prompt_tokens, ticket)?;
    if decision.cost.cached_tokens <= 0.0 && !room[decision.index] {
        // A miss gains nothing by waiting: the cheapest server with room, if any.
        if let Some(open) = prefix::choose(&views, &room, facts.prompt_tokens, ticket) {
            decision = open;
        }
    }
    let view = &views[decision.index];
    let reason = if decision.replica {
        Reason::Replicate
    } else if view.cached_tokens > 0.0 {
        Reason::PrefixHit
    } else {
        Reason::LeastCost
    };
    let cost = decision.cost;
    let uncached_tokens = (facts.prompt_tokens - cost.cached_tokens).max(0.0);
    Some(Choice {
        index: decision.index,
        reason,
        matched_blocks: (view.cached_tokens / TOKENS_PER_BLOCK).round() as usize,
        predicted: Some(Predicted {
            cached_tokens: cost.cached_tokens,
            uncached_tokens,
            prompt_tokens: facts.prompt_tokens,
            prefill_secs: cost.prefill_secs,
            queue_secs: cost.queue_secs,
            times_prefill: cost.queue_secs == 0.0
                && view.prefill_backlog_secs <= IDLE_PREFILL_SHARE * cost.prefill_secs
                && uncached_tokens >= MIN_PREFILL_SAMPLE_TOKENS,
        }),
    })
}

/// Prompt tokens the modelled cache of `server` has room for without evicting.
fn free_tokens(index: &prefix::PrefixIndex, server: u64) -> f64 {
    let (held, modelled) = index.tokens_of(server);
    (modelled - held).max(0.0)
}

/// The prompt tokens `member` holds by its KV-cache events, when its stream is exact: the
/// leading blocks of the prompt's first message (`hashes`, as the engine hashes them) it holds,
/// and, when it holds that whole message, what the approximate index says it holds beyond (the
/// rest of a chat's history). A node whose stream is not exact counts by the index alone.
fn exact_cached(member: &Member, hashes: &[u64], approximate: f64) -> f64 {
    let kv = member.state.kv.lock();
    if !kv.is_exact() {
        return approximate;
    }
    let held = kv.matched(hashes);
    let tokens = (held * kv.block_size().unwrap_or(DEFAULT_KV_BLOCK_SIZE)) as f64;
    if held == hashes.len() {
        tokens.max(approximate)
    } else {
        tokens
    }
}

/// Records a `cache_aware` request sent to `member`: the index learns the prompt is there, the
/// prefix's spread counts the server, its prefill goes on the server's timeline (and the request
/// in its arrival count), and the
/// prediction waits to be reconciled with what the server reports.
pub fn commit(
    pool: &UpstreamPool,
    facts: &InferenceFacts,
    member: &Member,
    predicted: &Predicted,
    now: Instant,
) {
    {
        let mut model = pool.prefix.lock();
        let PrefixModel { index, spread } = &mut *model;
        index.insert(&facts.hashes, member.id);
        index.predicted(member.id, predicted.cached_tokens, predicted.prompt_tokens);
        if let Some(key) = facts.hashes.first() {
            spread.note(*key, member.id, now);
        }
    }
    member
        .state
        .model
        .reserve_prefill(predicted.prefill_secs, now);
    member.state.model.note_arrival(now);
}

/// Chooses among `eligible` for an inference request. `None` only when empty. Under
/// `cache_aware` with a prompt to index, see [`cache_aware`]; otherwise every eligible server
/// has room.
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
    if matches!(balance, Balance::CacheAware) && !facts.hashes.is_empty() {
        return cache_aware(pool, settings, facts, eligible, ticket, now);
    }
    let with_signals = matches!(balance, Balance::Metrics | Balance::CacheAware);
    let loads: Vec<f64> = eligible
        .iter()
        .map(|m| load(m, settings, with_signals, now) / f64::from(m.current_weight().max(1)))
        .collect();
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
            predicted: None,
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
        predicted: None,
    })
}
