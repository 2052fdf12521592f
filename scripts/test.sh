#!/usr/bin/env bash
# Runs every check and test ferrogate has: formatting, clippy, unit tests, and the integration tests
# that start the real daemon against real servers on loopback, and the Debian package installed and
# run on this machine (scripts/test-package.sh: a release build). Installs what it needs first.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --all-targets --locked -- -D warnings
echo "== cargo test"
cargo test --locked
echo "== Debian package (build, install, run, purge)"
scripts/test-package.sh
echo "== fuzz targets (30 s each)"
scripts/fuzz.sh 30
