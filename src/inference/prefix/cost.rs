//! The cost model behind `cache_aware`: what a request costs on each server, in seconds until
//! its first token. A server's cost is the wait for a batch slot (requests ahead beyond its
//! slots, each holding one for the node's service time) or for the prefill already sent to it,
//! whichever is longer, plus the prefill of the prompt tokens that server does not hold (at its
//! prefill rate), plus part of what that recompute evicts there (the tokens it stores beyond
//! the server's free cache push out others' prefixes, recomputed later), plus what the prefill
//! holds up there: a server's prefills take turns on its GPU, so every request sent to it while
//! the prefill waits or runs gets its first token that much later (a long recompute on the
//! server a hot prefix lives on slows all of that prefix's requests). A request stays with a
//! server holding its prefix while that server has a free slot; it moves only when waiting
//! there costs more than recomputing elsewhere. Costs within a small margin count as equal,
//! and then the prefix's earliest holder wins (so a replica made under load is released when
//! the load drops), then the server holding more of the prompt, then the one holding fewer
//! prefixes, then the least loaded.

/// Batch slots assumed for a server when neither the engine nor `max_inflight` tells.
pub const DEFAULT_BATCH_SLOTS: f64 = 8.0;
/// Share of the recompute of what a request evicts charged to it.
pub const EVICTION_WEIGHT: f64 = 0.5;
/// Share of the delay a prefill puts on the requests arriving behind it that is charged to it.
pub const HOLD_UP_WEIGHT: f64 = 1.0;
/// Costs within this many seconds (or [`TIE_SHARE`] of the cheaper) count as equal.
pub const TIE_SECS: f64 = 0.05;
pub const TIE_SHARE: f64 = 0.05;

/// One eligible server as the cost model sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NodeView {
    pub server: u64,
    /// Requests on it now (router in-flight raised toward the engine's running + waiting).
    pub ahead: f64,
    /// Requests it runs at once.
    pub slots: f64,
    /// Seconds a request holds a slot.
    pub service_secs: f64,
    /// Prompt tokens per second.
    pub prefill_rate: f64,
    /// Seconds of prefill already sent to it.
    pub prefill_backlog_secs: f64,
    /// Prompt tokens it holds (leading blocks of the approximate index, or exact from its
    /// KV-cache events).
    pub cached_tokens: f64,
    /// Its rank among the prompt's prefix holders (0: home), if it is one.
    pub holder_rank: Option<usize>,
    /// Prompt tokens its modelled cache has room for without evicting anything.
    pub free_cache_tokens: f64,
    /// Prefixes it holds now.
    pub prefixes_held: usize,
    /// Requests sent to it per second, lately.
    pub arrival_rate: f64,
}

/// A server's predicted cost for one request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cost {
    /// Seconds waiting for a batch slot.
    pub queue_secs: f64,
    /// Prompt tokens predicted cached there.
    pub cached_tokens: f64,
    /// Seconds of its own prefill.
    pub prefill_secs: f64,
    /// Seconds of first-token delay its prefill puts on the requests sent there after it.
    pub hold_up_secs: f64,
    /// Everything: seconds to first token plus the eviction charge.
    pub total: f64,
}

impl NodeView {
    /// Whether a request sent now would find a free batch slot.
    pub fn has_free_slot(&self) -> bool {
        self.ahead + 1.0 <= self.slots
    }

    /// The cost of a request of `prompt_tokens` on this server.
    pub fn cost(&self, prompt_tokens: f64) -> Cost {
        let slots = self.slots.max(1.0);
        let queued = (self.ahead + 1.0 - slots).max(0.0);
        let queue_secs = queued * self.service_secs / slots;
        let cached_tokens = self.cached_tokens.clamp(0.0, prompt_tokens.max(0.0));
        let prefill_secs = (prompt_tokens - cached_tokens).max(0.0) / self.prefill_rate.max(1.0);
        let uncached = (prompt_tokens - cached_tokens).max(0.0);
        let evicted = (uncached - self.free_cache_tokens.max(0.0)).max(0.0);
        let eviction = evicted / self.prefill_rate.max(1.0) * EVICTION_WEIGHT;
        // Requests arriving while it waits behind the backlog are held up by all of it, those
        // arriving while it runs by half on average.
        let behind =
            self.arrival_rate.max(0.0) * (self.prefill_backlog_secs.max(0.0) + prefill_secs / 2.0);
        let hold_up_secs = HOLD_UP_WEIGHT * behind * prefill_secs;
        Cost {
            queue_secs,
            cached_tokens,
            prefill_secs,
            hold_up_secs,
            total: queue_secs.max(self.prefill_backlog_secs)
                + prefill_secs
                + eviction
                + hold_up_secs,
        }
    }
}

/// The server chosen for a request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Decision {
    /// Index into the views.
    pub index: usize,
    pub cost: Cost,
    /// It holds less of the prompt than another server that has no free slot: a new holder.
    pub replica: bool,
}

/// Chooses among `views` (those `allowed`) for a request of `prompt_tokens`; `rotate` breaks
/// full ties so equal servers share the work. `None` when nothing is allowed.
pub fn choose(
    views: &[NodeView],
    allowed: &[bool],
    prompt_tokens: f64,
    rotate: u64,
) -> Option<Decision> {
    let costs: Vec<Cost> = views.iter().map(|v| v.cost(prompt_tokens)).collect();
    let open: Vec<usize> = (0..views.len())
        .filter(|i| allowed.get(*i).copied().unwrap_or(false))
        .collect();
    let best_match = open
        .iter()
        .map(|i| views[*i].cached_tokens)
        .fold(0.0, f64::max);
    let holds_most = |i: usize| best_match > 0.0 && views[i].cached_tokens >= best_match;
    // A server holding the most of the prompt with a free slot keeps it, whatever else costs.
    let home_free = open
        .iter()
        .any(|i| holds_most(*i) && views[*i].has_free_slot());
    let pool: Vec<usize> = if home_free {
        open.iter()
            .copied()
            .filter(|i| holds_most(*i) && views[*i].has_free_slot())
            .collect()
    } else {
        open
    };
    let cheapest = pool
        .iter()
        .map(|i| costs[*i].total)
        .min_by(f64::total_cmp)?;
    let margin = TIE_SECS.max(cheapest * TIE_SHARE);
    let n = views.len().max(1) as u64;
    let key = |i: usize| {
        let v = &views[i];
        (
            v.holder_rank.unwrap_or(usize::MAX),
            std::cmp::Reverse(v.cached_tokens as u64),
            v.prefixes_held,
            // Less work ahead, in slots' worth, then rotation.
            (v.ahead / v.slots.max(1.0) * 1_000.0) as u64,
            (i as u64 + n - rotate % n) % n,
        )
    };
    let index = pool
        .iter()
        .copied()
        .filter(|i| costs[*i].total <= cheapest + margin)
        .min_by_key(|i| key(*i))?;
    Some(Decision {
        index,
        cost: costs[index],
        replica: best_match > 0.0 && views[index].cached_tokens < best_match,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 5,000-token prompts (78 blocks of 64), 4,000 tokens/s: a full recompute is 1.25 s.
    const PROMPT: f64 = 5_000.0;
    const HELD: f64 = 78.0 * 64.0;

    fn node(server: u64) -> NodeView {
        NodeView {
            server,
            ahead: 0.0,
            slots: 8.0,
            service_secs: 1.5,
            prefill_rate: 4_000.0,
            prefill_backlog_secs: 0.0,
            cached_tokens: 0.0,
            holder_rank: None,
            free_cache_tokens: 0.0,
            prefixes_held: 4,
            arrival_rate: 0.0,
        }
    }

    fn holder(server: u64, ahead: f64) -> NodeView {
        NodeView {
            ahead,
            cached_tokens: HELD,
            holder_rank: Some(0),
            ..node(server)
        }
    }

    fn pick(views: &[NodeView]) -> Decision {
        choose(views, &vec![true; views.len()], PROMPT, 0).expect("a choice")
    }

    #[test]
    fn a_holder_with_a_free_slot_keeps_the_request() {
        // Three of eight slots busy, nothing waiting, idle servers elsewhere.
        let views = [node(0), holder(1, 3.0), node(2), node(3)];
        let d = pick(&views);
        assert_eq!(d.index, 1);
        assert!(!d.replica);
        assert_eq!(d.cost.queue_secs, 0.0);
        // Even with prefill queued on it: a free slot keeps the prefix home.
        let busy = NodeView {
            prefill_backlog_secs: 3.0,
            ..holder(1, 7.0)
        };
        assert_eq!(pick(&[node(0), busy]).index, 1);
    }

    #[test]
    fn a_saturated_holder_with_a_long_queue_loses_to_a_cheaper_recompute() {
        // Full batch and 5 waiting: 6 × 1.5 / 8 = 1.13 s of queue against 1.25 s (+ eviction)
        // of recompute: still waits.
        let d = pick(&[holder(0, 13.0), node(1)]);
        assert_eq!(d.index, 0);
        // 16 waiting: 3.2 s of queue; the idle server recomputes sooner.
        let d = pick(&[holder(0, 24.0), node(1)]);
        assert_eq!(d.index, 1);
        assert!(d.replica, "a second holder of the prefix");
        // The cheaper of two other servers: the one with fewer requests ahead.
        let d = pick(&[
            holder(0, 24.0),
            node(1),
            NodeView {
                ahead: 9.0,
                ..node(2)
            },
        ]);
        assert_eq!(d.index, 1);
    }

    #[test]
    fn equal_costs_prefer_the_holder_then_its_home() {
        // A prompt too short for its prefill to matter: costs are equal.
        let short = |v: NodeView| NodeView {
            cached_tokens: v.cached_tokens.min(64.0),
            ..v
        };
        let views = [short(node(0)), short(holder(1, 0.0)), short(node(2))];
        let d = choose(&views, &[true; 3], 64.0, 0).expect("a choice");
        assert_eq!(d.index, 1);
        // Two holders, both with free slots: the home (rank 0) wins over the replica even when
        // the replica is idler.
        let replica = NodeView {
            holder_rank: Some(1),
            ..holder(0, 0.0)
        };
        let home = NodeView {
            holder_rank: Some(0),
            ..holder(1, 2.0)
        };
        assert_eq!(pick(&[replica, home]).index, 1);
    }

    #[test]
    fn a_miss_goes_where_fewest_prefixes_live_and_nothing_allowed_is_none() {
        let crowded = NodeView {
            prefixes_held: 6,
            ..node(0)
        };
        let d = pick(&[
            crowded,
            node(1),
            NodeView {
                prefixes_held: 2,
                ..node(2)
            },
        ]);
        assert_eq!(d.index, 2);
        assert!(!d.replica);
        assert!(choose(&[node(0)], &[false], PROMPT, 0).is_none());
        assert!(choose(&[], &[], PROMPT, 0).is_none());
        // Ties rotate.
        let a = choose(&[node(0), node(1)], &[true, true], PROMPT, 0).map(|d| d.index);
        let b = choose(&[node(0), node(1)], &[true, true], PROMPT, 1).map(|d| d.index);
        assert_ne!(a, b);
    }

    #[test]
    fn a_recompute_avoids_the_server_a_hot_prefix_keeps_busy() {
        // A miss: both servers idle, one of them receiving three requests a second (a hot
        // tenant's home). Its 1.25 s prefill would hold those up: the quiet one takes it.
        let hot_home = NodeView {
            arrival_rate: 3.0,
            prefixes_held: 1,
            ..node(0)
        };
        let quiet = NodeView {
            arrival_rate: 0.5,
            ..node(1)
        };
        let d = pick(&[hot_home, quiet]);
        assert_eq!(d.index, 1);
        assert!(d.cost.hold_up_secs > 0.0);
        // The hot prefix's own short requests (little to prefill) stay home however busy it is.
        let home = NodeView {
            cached_tokens: HELD,
            holder_rank: Some(0),
            ahead: 3.0,
            ..hot_home
        };
        let d = pick(&[home, quiet]);
        assert_eq!(d.index, 0);
        assert!(d.cost.hold_up_secs < 0.01);
    }

    #[test]
    fn a_replica_on_a_busy_server_is_charged_for_what_its_recompute_holds_up() {
        // Holder saturated with 16 waiting (3.2 s of queue): an idle server recomputes sooner...
        assert_eq!(pick(&[holder(0, 24.0), node(1)]).index, 1);
        // ...but not one that receives four requests a second: its 1.25 s recompute would hold
        // up every one of them.
        let busy = NodeView {
            arrival_rate: 4.0,
            ..node(1)
        };
        let d = pick(&[holder(0, 24.0), busy]);
        assert_eq!(d.index, 0);
        assert!(!d.replica, "waits for the holder");
    }

    #[test]
    fn a_recompute_is_charged_for_what_it_pushes_out_of_a_full_cache() {
        // Two idle servers, neither holding the prompt: one has room for it, the other would
        // evict 5,000 tokens of others' prefixes (half their 1.25 s recompute charged).
        let roomy = NodeView {
            free_cache_tokens: 20_000.0,
            ..node(0)
        };
        let full = node(1);
        assert_eq!(roomy.cost(PROMPT).total, 1.25);
        assert!((full.cost(PROMPT).total - 1.875).abs() < 1e-9);
        // Room for part of it: only the rest is charged.
        let half = NodeView {
            free_cache_tokens: 2_500.0,
            ..node(2)
        };
        assert!((half.cost(PROMPT).total - 1.5625).abs() < 1e-9);
        assert_eq!(pick(&[full, half, roomy]).index, 2);
    }
}
