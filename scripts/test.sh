#!/usr/bin/env bash
# Runs every check and test ferrogate has (the daemon and the simulator crate): formatting, clippy
# (also of the daemon without its default `demo` feature, as the container image and the Debian
# package build it), unit tests, the integration tests that start the real daemon against real
# servers on loopback, and the Debian package installed and run on this machine
# (scripts/test-package.sh: a release build). Installs what it needs first.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== import cycles between top-level modules"
python3 scripts/import-cycles.py
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo clippy / check without default features (no demo)"
cargo clippy -p ferrogate --no-default-features --all-targets --locked -- -D warnings
cargo check -p ferrogate --no-default-features --locked
echo "== cargo test"
cargo test --workspace --locked
echo "== Debian package (build, install, run, purge)"
scripts/test-package.sh
echo "== fuzz targets (30 s each)"
scripts/fuzz.sh 30
