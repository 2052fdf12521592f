//! Inference selection over real pools: model filtering, affinity with overflow, `metrics`
//! reading scraped load, `cache_aware` following prefixes and spilling hot ones.

use std::time::{Duration, Instant};

use http::HeaderMap;

use super::*;
use crate::config::model::{Engine, Inference, Models, Server};
use crate::inference::signals::Load;

fn server(port: u16, models: Option<&[&str]>) -> Server {
    Server {
        models: models.map(|m| m.iter().map(|s| s.to_string()).collect()),
        ..Server::new(([127, 0, 0, 1], port).into(), 1)
    }
}

fn settings(affinity: bool) -> Inference {
    Inference {
        engine: Engine::Vllm,
        models: Models::Discover,
        refresh: Duration::from_secs(10),
        max_body: 1 << 20,
        affinity,
        signal_max_age: Duration::from_secs(30),
        prefill_tokens_per_sec: None,
        cache_tokens: None,
        kv_hash_seed: "0".into(),
    }
}

fn facts(model: &str, prompt: &str, session: Option<&str>) -> InferenceFacts {
    let normalized = crate::inference::prefix::normalize(prompt);
    InferenceFacts {
        model: model.into(),
        hashes: crate::inference::prefix::block_hashes(&normalized),
        prompt_tokens: crate::inference::prefix::estimate_tokens(normalized.chars().count()),
        session: session.map(str::to_string),
        stream: true,
        lead: None,
    }
}

fn choose(pool: &UpstreamPool, balance: &Balance, s: &Inference, f: &InferenceFacts) -> Pick {
    choose_at(pool, balance, s, f, Instant::now())
}

/// [`choose`] at `now`, for tests whose outcome depends on how much time has passed (a prefill
/// backlog drains with it).
fn choose_at(
    pool: &UpstreamPool,
    balance: &Balance,
    s: &Inference,
    f: &InferenceFacts,
    now: Instant,
) -> Pick {
    let headers = HeaderMap::new();
    let req = RequestInfo {
        client_ip: None,
        headers: &headers,
        tried: &[],
        inference: Some(f),
    };
    let rules = Rules {
        balance,
        sticky: None,
        slow_start: None,
        inference: Some(s),
        may_queue: false,
    };
    match pool.select(&rules, &req, now) {
        Outcome::Picked(p) => p,
        other => panic!("expected a pick, got {other:?}"),
    }
}

#[test]
fn only_servers_of_the_model_are_chosen() {
    let pool = UpstreamPool::new("gpu");
    pool.set_configured(
        &[
            server(1, Some(&["a"])),
            server(2, Some(&["b"])),
            server(3, None),
        ],
        false,
        None,
    );
    // Server 3's list is unknown until discovery answers: it may serve anything.
    pool.members()[2]
        .state
        .signals
        .set_models(vec!["b".into()], Instant::now());
    let s = settings(false);
    let mut held = Vec::new();
    for _ in 0..6 {
        let p = choose(&pool, &Balance::LeastInflight, &s, &facts("b", "", None));
        assert_ne!(p.member.socket.port(), 1);
        held.push(p);
    }
    let p = choose(&pool, &Balance::LeastInflight, &s, &facts("a", "", None));
    assert_eq!(p.member.socket.port(), 1);
}

#[test]
fn affinity_keeps_a_chat_on_one_server_until_it_is_overloaded() {
    let pool = UpstreamPool::new("gpu");
    pool.set_configured(
        &[server(1, None), server(2, None), server(3, None)],
        false,
        None,
    );
    let s = settings(true);
    let f = facts("m", "", Some("chat-42"));
    let first = choose(&pool, &Balance::LeastInflight, &s, &f);
    assert_eq!(
        first.choice.map(|c| c.reason),
        Some(inference::Reason::Affinity)
    );
    let home = first.member.id;
    drop(first);
    for _ in 0..5 {
        let p = choose(&pool, &Balance::LeastInflight, &s, &f);
        assert_eq!(p.member.id, home);
    }
    // Pile requests on the home server: past 1.25 × mean load the chat overflows.
    let mut held = Vec::new();
    let mut overflowed = false;
    for _ in 0..10 {
        let p = choose(&pool, &Balance::LeastInflight, &s, &f);
        if p.member.id != home {
            assert_eq!(
                p.choice.map(|c| c.reason),
                Some(inference::Reason::AffinityOverflow)
            );
            overflowed = true;
        }
        held.push(p);
    }
    assert!(overflowed);
    let on_home = held.iter().filter(|p| p.member.id == home).count();
    assert!((3..10).contains(&on_home), "{on_home}");
}

#[test]
fn metrics_policy_avoids_the_server_with_a_long_queue() {
    let pool = UpstreamPool::new("gpu");
    pool.set_configured(&[server(1, None), server(2, None)], false, None);
    let now = Instant::now();
    let busy = Load {
        waiting: 12.0,
        running: 8.0,
        kv_usage: Some(0.95),
        prefix_hit_tokens: None,
        prefix_query_tokens: None,
        cache_tokens: None,
    };
    pool.members()[0].state.signals.set_load(busy, now);
    let s = settings(false);
    for _ in 0..5 {
        let p = choose(&pool, &Balance::Metrics, &s, &facts("m", "", None));
        assert_eq!(p.member.socket.port(), 2);
    }
    // least_inflight ignores scraped load: both servers are idle for the router.
    let ports: std::collections::BTreeSet<u16> = (0..4)
        .map(|_| {
            choose(&pool, &Balance::LeastInflight, &s, &facts("m", "", None))
                .member
                .socket
                .port()
        })
        .collect();
    assert_eq!(ports.len(), 2);
}

#[test]
fn cache_aware_follows_the_prefix_and_spills_a_hot_one() {
    let pool = UpstreamPool::new("gpu");
    pool.set_configured(
        &[server(1, None), server(2, None), server(3, None)],
        false,
        None,
    );
    let s = settings(true);
    let tenant = "You are the support bot of tenant 7. ".repeat(100);
    let first = choose(&pool, &Balance::CacheAware, &s, &facts("m", &tenant, None));
    assert_eq!(
        first.choice.map(|c| c.reason),
        Some(inference::Reason::LeastCost)
    );
    let home = first.member.id;
    drop(first);
    let again = choose(
        &pool,
        &Balance::CacheAware,
        &s,
        &facts("m", &format!("{tenant} question two"), None),
    );
    assert_eq!(again.member.id, home);
    let choice = again.choice.expect("choice");
    assert_eq!(choice.reason, inference::Reason::PrefixHit);
    assert!(choice.matched_blocks >= 10);
    drop(again);
    // The two requests above held their slots for microseconds; on a GPU one holds a slot for
    // about a second.
    for m in pool.members().iter() {
        for _ in 0..100 {
            m.state.model.observe_service(Duration::from_secs(1));
        }
    }
    // Hold many requests of the same prefix: the holder's batch fills up and its queue grows,
    // later ones spill elsewhere.
    let mut held = Vec::new();
    for _ in 0..12 {
        held.push(choose(
            &pool,
            &Balance::CacheAware,
            &s,
            &facts("m", &tenant, None),
        ));
    }
    let on_home = held.iter().filter(|p| p.member.id == home).count();
    assert!(on_home < 12, "a hot prefix must spill");
    assert!(on_home >= 4, "the holder keeps its share: {on_home}");
}

fn outcome(pool: &UpstreamPool, s: &Inference, f: &InferenceFacts) -> Outcome {
    outcome_with(pool, s, f, true)
}

fn outcome_with(
    pool: &UpstreamPool,
    s: &Inference,
    f: &InferenceFacts,
    may_queue: bool,
) -> Outcome {
    let headers = HeaderMap::new();
    let req = RequestInfo {
        client_ip: None,
        headers: &headers,
        tried: &[],
        inference: Some(f),
    };
    let rules = Rules {
        balance: &Balance::CacheAware,
        sticky: None,
        slow_start: None,
        inference: Some(s),
        may_queue,
    };
    pool.select(&rules, &req, Instant::now())
}

#[test]
fn cache_aware_waits_for_a_full_prefix_holder_but_not_for_a_miss() {
    let pool = UpstreamPool::new("gpu");
    let limited = |port| Server {
        max_inflight: Some(1),
        ..server(port, None)
    };
    pool.set_configured(&[limited(1), limited(2), limited(3)], false, None);
    // A request holds a slot 0.2 s; a prompt of about 5,000 tokens takes 0.6 s to recompute.
    for m in pool.members().iter() {
        m.state.model.observe_service(Duration::from_millis(200));
    }
    let s = settings(true);
    let prompt = |t: u32| format!("You are the assistant of tenant {t}. ").repeat(600);
    // Three tenants fill the three single-slot servers.
    let held: Vec<Pick> = (0..3)
        .map(|t| {
            choose(
                &pool,
                &Balance::CacheAware,
                &s,
                &facts("m", &prompt(t), None),
            )
        })
        .collect();
    let home = held[0].member.id;
    // Everyone is full: tenant 0 waits (for its holder), and so does a new prompt.
    assert!(matches!(
        outcome(&pool, &s, &facts("m", &prompt(0), None)),
        Outcome::Full
    ));
    assert!(matches!(
        outcome(&pool, &s, &facts("m", &prompt(9), None)),
        Outcome::Full
    ));
    // A slot frees on a server that does not hold tenant 0's prefix: tenant 0 keeps waiting
    // for its holder (0.2 s) rather than recomputing its prompt there (0.6 s); a new prompt
    // takes the slot.
    let mut held = held;
    let freed = held.remove(1);
    let freed_id = freed.member.id;
    drop(freed);
    assert!(matches!(
        outcome(&pool, &s, &facts("m", &prompt(0), None)),
        Outcome::Full
    ));
    match outcome(&pool, &s, &facts("m", &prompt(9), None)) {
        Outcome::Picked(p) => assert_eq!(p.member.id, freed_id),
        other => panic!("a miss should take the free slot, got {other:?}"),
    }
    // The holder frees: tenant 0 goes home with its prefix predicted cached.
    drop(held.remove(0));
    match outcome(&pool, &s, &facts("m", &prompt(0), None)) {
        Outcome::Picked(p) => {
            assert_eq!(p.member.id, home);
            assert!(p.choice.is_some_and(|c| c.matched_blocks > 0));
        }
        other => panic!("expected the holder, got {other:?}"),
    }
}

#[test]
fn without_a_queue_cache_aware_never_waits_while_a_server_has_room() {
    let pool = UpstreamPool::new("gpu");
    let limited = |port| Server {
        max_inflight: Some(1),
        ..server(port, None)
    };
    pool.set_configured(&[limited(1), limited(2)], false, None);
    let s = settings(true);
    let prompt = "You are the assistant of tenant 0. ".repeat(60);
    let held = choose(&pool, &Balance::CacheAware, &s, &facts("m", &prompt, None));
    // Its holder is full; with nowhere to wait the request takes the other server's slot.
    match outcome_with(&pool, &s, &facts("m", &prompt, None), false) {
        Outcome::Picked(p) => assert_ne!(p.member.id, held.member.id),
        other => panic!("expected the server with room, got {other:?}"),
    }
}

#[test]
fn follow_ups_stay_on_a_holder_with_free_slots() {
    let pool = UpstreamPool::new("gpu");
    pool.set_configured(
        &[
            server(1, None),
            server(2, None),
            server(3, None),
            server(4, None),
        ],
        false,
        None,
    );
    let now = Instant::now();
    // The engines run eight at once (seen with a queue once).
    for m in pool.members().iter() {
        m.state.model.observe_reading(8.0, 1.0);
    }
    let s = settings(true);
    let tenant = "You are the assistant of tenant 3. Follow its handbook. ".repeat(300);
    let first = choose(&pool, &Balance::CacheAware, &s, &facts("m", &tenant, None));
    let home = first.member.id;
    // Three of its eight slots busy, the other servers idle: every follow-up stays home.
    let busy: Vec<Pick> = (0..2)
        .map(|_| choose(&pool, &Balance::CacheAware, &s, &facts("m", &tenant, None)))
        .chain(std::iter::once(first))
        .collect();
    assert!(busy.iter().all(|p| p.member.id == home));
    for turn in 0..20 {
        let p = choose(
            &pool,
            &Balance::CacheAware,
            &s,
            &facts("m", &format!("{tenant} turn {turn}"), None),
        );
        assert_eq!(p.member.id, home, "turn {turn} moved");
        assert_eq!(
            p.choice.map(|c| c.reason),
            Some(inference::Reason::PrefixHit)
        );
    }
    assert_eq!(pool.prefix_spread(now).max, 1);
}

#[test]
fn a_saturated_holder_gets_one_replica_and_is_released_when_the_load_drops() {
    let pool = UpstreamPool::new("gpu");
    pool.set_configured(
        &[server(1, None), server(2, None), server(3, None)],
        false,
        None,
    );
    for m in pool.members().iter() {
        // Two slots each, 2 s per request: a queue of two costs as much as a 1 s recompute.
        m.state.model.observe_reading(2.0, 1.0);
        m.state.model.observe_service(Duration::from_secs(2));
    }
    let s = Inference {
        prefill_tokens_per_sec: Some(4_000),
        ..settings(true)
    };
    let tenant = "You are the assistant of tenant 5. Follow its handbook. ".repeat(300);
    // The burst arrives at one instant (the closest case: no prefill has drained between its
    // requests), so the outcome does not depend on how fast the test runs.
    let start = Instant::now();
    let mut held = Vec::new();
    for _ in 0..8 {
        held.push(choose_at(
            &pool,
            &Balance::CacheAware,
            &s,
            &facts("m", &tenant, None),
            start,
        ));
    }
    let home = held[0].member.id;
    let servers: std::collections::BTreeSet<u64> = held.iter().map(|p| p.member.id).collect();
    assert!(servers.len() >= 2, "a saturated holder spills");
    assert!(held
        .iter()
        .any(|p| p.choice.map(|c| c.reason) == Some(inference::Reason::Replicate)));
    let on_home = held.iter().filter(|p| p.member.id == home).count();
    assert!(on_home >= 3, "the home keeps its share: {on_home}");
    // The load drops: the burst's requests end (2 s each, their prefills long done), and
    // everything goes home again while the replica is still within the spread window.
    drop(held);
    let later = start + Duration::from_secs(3);
    for turn in 0..5 {
        let p = choose_at(
            &pool,
            &Balance::CacheAware,
            &s,
            &facts("m", &tenant, None),
            later + Duration::from_millis(turn * 100),
        );
        assert_eq!(p.member.id, home, "turn {turn} left home");
        assert_eq!(
            p.choice.map(|c| c.reason),
            Some(inference::Reason::PrefixHit)
        );
    }
}

#[test]
fn a_hot_prefix_stays_on_one_server_and_new_prefixes_keep_off_it() {
    let pool = UpstreamPool::new("gpu");
    pool.set_configured(
        &[server(1, None), server(2, None), server(3, None)],
        false,
        None,
    );
    for m in pool.members().iter() {
        m.state.model.observe_reading(8.0, 1.0);
    }
    let s = Inference {
        prefill_tokens_per_sec: Some(4_000),
        ..settings(true)
    };
    let prompt = |t: u32| format!("You are the assistant of tenant {t}. Follow it. ").repeat(300);
    // The hot tenant's requests come one after another: its home always has a free slot and
    // keeps every one of them.
    let home = choose(
        &pool,
        &Balance::CacheAware,
        &s,
        &facts("m", &prompt(0), None),
    )
    .member
    .id;
    for turn in 0..30 {
        let p = choose(
            &pool,
            &Balance::CacheAware,
            &s,
            &facts("m", &format!("{} turn {turn}", prompt(0)), None),
        );
        assert_eq!(p.member.id, home, "turn {turn} left the hot tenant's home");
    }
    // Six new tenants: each recompute would hold up the hot tenant's stream, so none goes to its
    // home, though the home holds the fewest prefixes.
    for t in 1..=6 {
        let p = choose(
            &pool,
            &Balance::CacheAware,
            &s,
            &facts("m", &prompt(t), None),
        );
        assert_ne!(
            p.member.id, home,
            "tenant {t} was put on the hot tenant's home"
        );
        assert!(p
            .choice
            .is_some_and(|c| c.predicted.is_some_and(|x| x.queue_secs == 0.0)));
    }
    assert_eq!(pool.prefix_spread(Instant::now()).max, 1);
}
