#!/usr/bin/env bash
# Runs every check and test ferrogate has: formatting, clippy, unit tests, and the integration tests
# that start the real daemon against real servers on loopback. Installs what it needs first.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== import cycles between top-level modules"
python3 scripts/import-cycles.py
echo "== cargo clippy"
cargo clippy --all-targets --locked -- -D warnings
echo "== cargo test"
cargo test --locked
echo "== fuzz targets (30 s each)"
scripts/fuzz.sh 30
