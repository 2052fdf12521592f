//! What a reload costs: parsing and validating a configuration with 10,000 routes and compiling it
//! into a snapshot (the target is well under 100 ms). `cargo bench --bench config_compile`.

use std::fmt::Write as _;
use std::hint::black_box;
use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion};
use ferrogate::config;
use ferrogate::pool::Registry;
use ferrogate::runtime::Snapshot;

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
    // The long-lived registry exists already at a reload: compiling re-attaches to it.
    let registry = Registry::default();
    // A reload: routes unchanged since the last compile keep their metric handles.
    group.bench_function("compile_snapshot", |b| {
        b.iter(|| Snapshot::compile(black_box(&loaded), 2, &registry))
    });
    // Start-up: every route's metric handles resolved afresh.
    group.bench_function("compile_snapshot_first", |b| {
        b.iter(|| {
            ferrogate::observe::request::retain_observers(&Default::default());
            Snapshot::compile(black_box(&loaded), 2, &registry)
        })
    });
    group.bench_function("validate_and_compile", |b| {
        b.iter(|| {
            config::load_str(black_box(&source), path)
                .map(|loaded| Snapshot::compile(&loaded, 2, &registry))
        })
    });
    group.finish();
}

criterion_group!(benches, compile);
criterion_main!(benches);
