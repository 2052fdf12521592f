//! Balancer cost against pool size (2, 64, 1,000 servers) for each general policy, and the
//! cache_aware prefix index: hashing a 5,000-token prompt and choosing among 8 servers for a
//! cached and an unseen prompt. `cargo bench --bench selection`.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Instant;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use ferrogate::config::model::{Balance, HashKey, Server};
use ferrogate::inference::prefix::{self, NodeView, PrefixIndex};
use ferrogate::pool::select::Rules;
use ferrogate::pool::{Outcome, RequestInfo, UpstreamPool};

/// The daemon's allocator, so the figures are the daemon's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn pool(servers: usize) -> UpstreamPool {
    let list: Vec<Server> = (0..servers)
        .map(|i| {
            let socket = SocketAddr::new(
                IpAddr::V4(Ipv4Addr::new(10, 0, (i / 250) as u8, (i % 250) as u8 + 1)),
                8080,
            );
            Server {
                address: socket.to_string(),
                socket,
                weight: 1 + (i % 3) as u32,
                max_inflight: None,
                drain: false,
                models: None,
                kv_events: None,
            }
        })
        .collect();
    let pool = UpstreamPool::new("bench");
    pool.set_configured(&list, false, None);
    pool
}

fn selection(c: &mut Criterion) {
    let mut group = c.benchmark_group("select");
    let headers = http::HeaderMap::new();
    let req = RequestInfo {
        client_ip: Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7))),
        headers: &headers,
        tried: &[],
        inference: None,
    };
    let policies = [
        ("round_robin", Balance::RoundRobin),
        ("least_inflight", Balance::LeastInflight),
        ("p2c", Balance::P2c),
        ("hash_client_ip", Balance::Hash(HashKey::ClientIp)),
    ];
    for servers in [2usize, 64, 1_000] {
        let pool = pool(servers);
        for (name, balance) in &policies {
            let rules = Rules {
                balance,
                sticky: None,
                slow_start: None,
                inference: None,
                may_queue: false,
            };
            group.bench_with_input(BenchmarkId::new(*name, servers), &servers, |b, _| {
                b.iter(
                    || match pool.select(black_box(&rules), &req, Instant::now()) {
                        // Dropping the pick gives its in-flight slot back, as a finished request does.
                        Outcome::Picked(pick) => black_box(pick.member.id),
                        _ => 0,
                    },
                )
            });
        }
    }
    group.finish();
}

fn prefix_index(c: &mut Criterion) {
    let mut group = c.benchmark_group("prefix_index");
    // A 5,000-token system prompt is about 20,000 characters.
    let tenant =
        |t: usize| format!("You are the assistant of tenant {t}. Follow policy {t}. ").repeat(400);
    let prompt = tenant(7);
    group.bench_function("hash_5000_token_prompt", |b| {
        b.iter(|| prefix::block_hashes(&prefix::normalize(black_box(&prompt))))
    });
    // 64 tenants spread over 8 servers, as a busy pool's index holds them.
    let mut index = PrefixIndex::new();
    for t in 0..64 {
        index.insert(
            &prefix::block_hashes(&prefix::normalize(&tenant(t))),
            (t % 8) as u64,
        );
    }
    // What a decision does: look the prompt up on every server, price it there, pick.
    let decide = |hashes: &[u64]| {
        let views: Vec<NodeView> = (0..8u64)
            .map(|server| NodeView {
                server,
                ahead: (server % 3) as f64,
                slots: 8.0,
                service_secs: 1.0,
                prefill_rate: 4_000.0,
                prefill_backlog_secs: 0.0,
                cached_tokens: index.matched(hashes, server) as f64 * prefix::TOKENS_PER_BLOCK,
                holder_rank: None,
                free_cache_tokens: {
                    let (held, modelled) = index.tokens_of(server);
                    (modelled - held).max(0.0)
                },
                prefixes_held: 8,
                arrival_rate: 1.0,
            })
            .collect();
        prefix::choose(&views, &[true; 8], 5_000.0, 0)
    };
    let cached = prefix::block_hashes(&prefix::normalize(&prompt));
    let unseen = prefix::block_hashes(&prefix::normalize(&tenant(1_000)));
    group.bench_function("choose_8_servers_cached", |b| {
        b.iter(|| decide(black_box(&cached)))
    });
    group.bench_function("choose_8_servers_unseen", |b| {
        b.iter(|| decide(black_box(&unseen)))
    });
    group.finish();
}

criterion_group!(benches, selection, prefix_index);
criterion_main!(benches);
