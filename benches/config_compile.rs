//! What a reload costs: parsing and validating a configuration with 10,000 routes and compiling it
//! into a snapshot (the target is well under 100 ms). `cargo bench --bench config_compile`.

use std::fmt::Write as _;
use std::hint::black_box;
use std::path::Path;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use ferrogate::config;
use ferrogate::runtime::{Live, Snapshot};

/// The daemon's allocator, so the figures are the daemon's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const ROUTES: usize = 10_000;
const UPSTREAMS: usize = 100;

fn yaml() -> String {
    let mut y = String::from(
        "state_dir: /tmp/ferrogate-bench\nlisteners: { http: 127.0.0.1:18080 }\nroutes:\n",
    );
    for i in 0..ROUTES {
        let _ = writeln!(
            y,
            "  - {{ name: r{i}, hosts: [h{i}.example.com], path_prefix: /p{}/, upstream: u{} }}",
            i % 7,
            i % UPSTREAMS
        );
    }
    y.push_str("upstreams:\n");
    for u in 0..UPSTREAMS {
        let _ = writeln!(
            y,
            "  u{u}: {{ servers: [ {{ address: 127.0.0.{}:8080 }}, {{ address: 127.0.1.{}:8080 }} ] }}",
            u % 250 + 1,
            u % 250 + 1
        );
    }
    y
}

fn compile(c: &mut Criterion) {
    let source = yaml();
    let path = Path::new("bench.yaml");
    let mut group = c.benchmark_group("reload_10k_routes");
    group.sample_size(20);
    group.bench_function("validate", |b| {
        b.iter(|| config::load_str(black_box(&source), path).map(|c| c.routes.len()))
    });
    let loaded = match config::load_str(&source, path) {
        Ok(loaded) => loaded,
        Err(errors) => panic!("bench configuration is invalid:\n{errors}"),
    };
    // The long-lived state exists already at a reload, the routes' observers kept by the
    // previous commit: compiling looks them up.
    let live = Live::new().unwrap_or_else(|e| panic!("{e}"));
    let prepared = live.prepare(&loaded).unwrap_or_else(|e| panic!("{e}"));
    live.commit(prepared);
    group.bench_function("compile_snapshot", |b| {
        b.iter(|| Snapshot::compile(black_box(&loaded), 2, &live, None))
    });
    // Start-up: nothing kept yet, every route's metric handles resolved when it commits.
    group.bench_function("compile_snapshot_first", |b| {
        b.iter_batched(
            || Live::new().unwrap_or_else(|e| panic!("{e}")),
            |fresh| {
                let prepared = fresh
                    .prepare(black_box(&loaded))
                    .unwrap_or_else(|e| panic!("{e}"));
                fresh.commit(prepared)
            },
            BatchSize::PerIteration,
        )
    });
    group.bench_function("validate_and_compile", |b| {
        b.iter(|| {
            config::load_str(black_box(&source), path)
                .map(|loaded| Snapshot::compile(&loaded, 2, &live, None))
        })
    });
    group.finish();
}

criterion_group!(benches, compile);
criterion_main!(benches);
