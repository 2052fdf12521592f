//! Route lookup cost against table size (10, 1k, 10k routes): exact host with the longest path
//! prefix, a wildcard host, and the fallback for an unknown host. `cargo bench --bench routing`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use ferrogate::config::model::HostMatch;
use ferrogate::routing::Router;

fn table(routes: usize) -> Router<usize> {
    let mut router = Router::default();
    // Three rules per host: an exact host with two prefixes and a wildcard.
    for i in 0..routes / 3 {
        router.insert(&[HostMatch::Exact(format!("h{i}.example.com"))], "/", i);
        router.insert(&[HostMatch::Exact(format!("h{i}.example.com"))], "/api/", i);
        router.insert(&[HostMatch::Wildcard(format!("w{i}.example.com"))], "/", i);
    }
    router.insert(&[], "/", usize::MAX);
    router
}

fn lookups(c: &mut Criterion) {
    let mut group = c.benchmark_group("route_lookup");
    for routes in [10usize, 1_000, 10_000] {
        let router = table(routes);
        let last = routes / 3 - 1;
        let exact = format!("h{last}.example.com");
        let wildcard = format!("x.w{last}.example.com");
        group.bench_with_input(
            BenchmarkId::new("exact_longest_prefix", routes),
            &routes,
            |b, _| b.iter(|| router.find(black_box(&exact), black_box("/api/chats/1"))),
        );
        group.bench_with_input(BenchmarkId::new("wildcard", routes), &routes, |b, _| {
            b.iter(|| router.find(black_box(&wildcard), black_box("/index.html")))
        });
        group.bench_with_input(BenchmarkId::new("fallback", routes), &routes, |b, _| {
            b.iter(|| router.find(black_box("unknown.test"), black_box("/")))
        });
    }
    group.finish();
}

criterion_group!(benches, lookups);
criterion_main!(benches);
