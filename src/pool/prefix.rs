//! The pool's side of `cache_aware`'s model: a server's metrics reading teaches its node model
//! (batch slots) and its modelled cache (the size its engine reports, else the configured
//! one), and its prefix-cache counters reconcile the index's predictions; a counter that went
//! backwards (the engine restarted) empties what the index holds for it. Summaries of the
//! model for status and metrics.

use std::time::Instant;

use super::members::{Member, UpstreamPool};
use crate::inference::prefix::index::Correction;
use crate::inference::prefix::{PrefixSpread, SpreadSummary, TOKENS_PER_BLOCK};
use crate::inference::signals::Load;

/// What the model says about one server, for status and metrics.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ServerModel {
    /// Tokens the index believes the server holds.
    pub index_tokens: f64,
    /// The server's modelled cache, in tokens.
    pub cache_tokens: f64,
    /// Prompt tokens per second it was seen to prefill, once learned.
    pub prefill_rate: Option<f64>,
    /// Batch slots it was seen to run, once learned.
    pub batch_slots: Option<f64>,
    /// Seconds a request holds a slot.
    pub service_secs: f64,
}

/// What a reading changed, for the metrics.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ReadingEffect {
    Nothing,
    /// The counters went backwards: the index forgot the server.
    Cleared,
    Corrected(Correction),
}

impl UpstreamPool {
    /// Whether the index believes some server holds the first block of `hashes` (a prompt
    /// seen before, so where it is cached matters).
    pub fn prefix_seen(&self, hashes: &[u64]) -> bool {
        let Some(first) = hashes.first() else {
            return false;
        };
        let model = self.prefix.lock();
        self.members()
            .iter()
            .any(|m| model.index.matched(std::slice::from_ref(first), m.id) > 0)
    }

    /// Learns from a metrics reading of `member` (`previous`: the reading before it);
    /// `configured_cache_tokens` is the upstream's `inference.cache_tokens`.
    pub fn learn_from_reading(
        &self,
        member: &Member,
        load: &Load,
        previous: Option<&Load>,
        configured_cache_tokens: Option<u64>,
    ) -> ReadingEffect {
        member
            .state
            .model
            .observe_reading(load.running, load.waiting);
        let cache_tokens = load
            .cache_tokens
            .or(configured_cache_tokens.map(|t| t as f64));
        let blocks = cache_tokens.map(|t| (t / TOKENS_PER_BLOCK).floor() as usize);
        let mut model = self.prefix.lock();
        model.index.set_ceiling(member.id, blocks);
        let (Some(hits), Some(queries)) = (load.prefix_hit_tokens, load.prefix_query_tokens) else {
            return ReadingEffect::Nothing;
        };
        let Some(before) = previous else {
            return ReadingEffect::Nothing;
        };
        let (Some(hits_before), Some(queries_before)) =
            (before.prefix_hit_tokens, before.prefix_query_tokens)
        else {
            return ReadingEffect::Nothing;
        };
        if hits < hits_before || queries < queries_before {
            model.index.clear_server(member.id);
            model.spread.forget_server(member.id);
            return ReadingEffect::Cleared;
        }
        match model
            .index
            .reconcile(member.id, hits - hits_before, queries - queries_before)
        {
            Some(correction) => ReadingEffect::Corrected(correction),
            None => ReadingEffect::Nothing,
        }
    }

    /// The model of `member` now.
    pub fn server_model(&self, member: &Member, now: Instant) -> ServerModel {
        let (index_tokens, cache_tokens) = self.prefix.lock().index.tokens_of(member.id);
        let estimates = member.state.model.estimates(0.0, now);
        ServerModel {
            index_tokens,
            cache_tokens,
            prefill_rate: member.state.model.learned_prefill_rate(),
            batch_slots: estimates.batch_slots,
            service_secs: estimates.service_secs,
        }
    }

    /// How spread the prefixes active now are.
    pub fn prefix_spread(&self, now: Instant) -> SpreadSummary {
        let mut model = self.prefix.lock();
        model.spread.prune(now);
        model.spread.summary(now)
    }

    /// The `limit` busiest prefixes now with their holders.
    pub fn busiest_prefixes(&self, limit: usize, now: Instant) -> Vec<PrefixSpread> {
        self.prefix.lock().spread.busiest(limit, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::model::Server;

    fn reading(hits: f64, queries: f64) -> Load {
        Load {
            waiting: 2.0,
            running: 8.0,
            kv_usage: None,
            prefix_hit_tokens: Some(hits),
            prefix_query_tokens: Some(queries),
            cache_tokens: Some(64.0 * 1_000.0),
        }
    }

    #[test]
    fn readings_size_the_cache_and_a_restart_empties_it() {
        let pool = UpstreamPool::new("gpu");
        pool.set_configured(&[Server::new(([127, 0, 0, 1], 1).into(), 1)], false, None);
        let member = pool.members()[0].clone();
        let hashes: Vec<u64> = (0..10).collect();
        pool.prefix.lock().index.insert(&hashes, member.id);
        let first = reading(1_000.0, 2_000.0);
        assert_eq!(
            pool.learn_from_reading(&member, &first, None, None),
            ReadingEffect::Nothing
        );
        let now = Instant::now();
        let model = pool.server_model(&member, now);
        assert_eq!(model.cache_tokens, 64.0 * 1_000.0);
        assert_eq!(model.index_tokens, 640.0);
        assert_eq!(model.batch_slots, Some(8.0));
        // The engine restarted: its counters start again, its cache is empty.
        let restarted = reading(0.0, 100.0);
        assert_eq!(
            pool.learn_from_reading(&member, &restarted, Some(&first), None),
            ReadingEffect::Cleared
        );
        assert_eq!(pool.server_model(&member, now).index_tokens, 0.0);
        // Without a reported size the configured one counts.
        let mut unsized_reading = reading(10.0, 200.0);
        unsized_reading.cache_tokens = None;
        pool.learn_from_reading(&member, &unsized_reading, Some(&restarted), Some(64 * 500));
        assert_eq!(pool.server_model(&member, now).cache_tokens, 64.0 * 500.0);
    }
}
