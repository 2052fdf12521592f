//! Micro-benchmark of the routing table: lookups per second for exact, wildcard and fallback hosts
//! over a table of 1,000 hosts (median of several rounds; run with `cargo bench --bench routing`).

use std::hint::black_box;
use std::time::Instant;

use ferrogate::config::model::HostMatch;
use ferrogate::routing::Router;

const HOSTS: usize = 1_000;
const LOOKUPS: usize = 200_000;
const ROUNDS: usize = 7;

fn main() {
    let mut router = Router::default();
    for i in 0..HOSTS {
        router.insert(&[HostMatch::Exact(format!("h{i}.example.com"))], "/", i);
        router.insert(
            &[HostMatch::Exact(format!("h{i}.example.com"))],
            "/api/",
            i + HOSTS,
        );
        router.insert(&[HostMatch::Wildcard(format!("w{i}.example.com"))], "/", i);
    }
    router.insert(&[], "/", usize::MAX);

    for (label, host, path) in [
        (
            "exact host, longest prefix",
            "h500.example.com",
            "/api/chats/1",
        ),
        ("wildcard host", "x.w500.example.com", "/index.html"),
        ("fallback (any host)", "unknown.test", "/"),
    ] {
        let mut rates = Vec::with_capacity(ROUNDS);
        for _ in 0..ROUNDS {
            let start = Instant::now();
            for _ in 0..LOOKUPS {
                black_box(router.find(black_box(host), black_box(path)));
            }
            rates.push(LOOKUPS as f64 / start.elapsed().as_secs_f64());
        }
        rates.sort_by(f64::total_cmp);
        let median = rates[ROUNDS / 2];
        println!(
            "{label:<28} {:>8.1} M lookups/s (median of {ROUNDS})",
            median / 1e6
        );
    }
}
