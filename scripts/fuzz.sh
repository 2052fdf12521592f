#!/usr/bin/env bash
# Runs each cargo-fuzz target for a bounded time (default 30 s each). Needs cargo-fuzz and a
# nightly toolchain (`cargo install cargo-fuzz`); without them it runs the same fuzz bodies on
# stable over mutated seeds and random inputs (an ordinary unit test) and says so.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_EACH="${1:-30}"
if cargo +nightly fuzz --version >/dev/null 2>&1; then
    for target in config_loader route_matcher proxy_header; do
        (cd fuzz && cargo +nightly fuzz run "$target" -- -max_total_time="$SECONDS_EACH")
    done
else
    echo "cargo-fuzz or nightly not available: running the stable smoke run of the fuzz bodies" >&2
    cargo test --lib security::fuzz_bodies
fi
