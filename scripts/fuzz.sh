#!/usr/bin/env bash
# Runs each cargo-fuzz target (config loader, route matcher, PROXY header parser) for a bounded
# time (default 30 s each); a crash fails the script. Needs cargo-fuzz (`cargo install cargo-fuzz`);
# works on the stable toolchain: RUSTC_BOOTSTRAP=1 lets cargo-fuzz pass its nightly-only flags, and
# `--sanitizer none` skips AddressSanitizer (which needs a nightly std; the code is
# `unsafe_code = "forbid"`, so the fuzzers look for panics, hangs and runaway memory). Without
# cargo-fuzz it runs the same fuzz bodies (fuzz/src/lib.rs) on stable over mutated seeds and random
# inputs (an ordinary unit test of the fuzz crate) and says so.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_EACH="${1:-30}"
if cargo fuzz --version >/dev/null 2>&1; then
    for target in config_loader route_matcher proxy_header; do
        echo "== cargo fuzz run $target (${SECONDS_EACH}s)"
        (cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run --sanitizer none --dev "$target" -- \
            -max_total_time="$SECONDS_EACH")
    done
else
    echo "cargo-fuzz not available: running the stable smoke run of the fuzz bodies" >&2
    (cd fuzz && cargo test --lib)
fi
