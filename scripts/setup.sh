#!/usr/bin/env bash
# Installs what building and testing ferrogate needs on a fresh Debian machine that already has the
# Rust toolchain: cmake (pingora's zlib-ng build) and the tools the tests use (chromium renders the
# status page; systemd-analyze verifies the unit file; redis-server for the cluster tests; for the
# ACME tests Pebble +
# pebble-challtestsrv, bind9's named, dig, openssl and curl; HAProxy for the import-haproxy test;
# uvicorn and opentelemetry-proto from PyPI, in a virtual environment at target/test-venv: a real
# Python backend and OTLP decoder). Safe to run again; installs only what
# is missing. `scripts/setup.sh --build` installs only what building needs (for the demo);
# `--release` also the clients of the profile-guided build's training run (h2load, curl; see
# scripts/build-release.sh).
set -euo pipefail

mode=${1:-}
build_only=false
if [ "$mode" = "--build" ] || [ "$mode" = "--release" ]; then build_only=true; fi

need=()
command -v cmake >/dev/null 2>&1 || need+=(cmake)
command -v cc >/dev/null 2>&1 || need+=(gcc)
if [ "$mode" = "--release" ]; then
command -v h2load >/dev/null 2>&1 || need+=(nghttp2-client)     # the training run's load
command -v curl >/dev/null 2>&1 || need+=(curl)
fi
if [ "$build_only" = false ]; then
command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || need+=(chromium)
command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)   # unit file verification test
command -v pebble >/dev/null 2>&1 || need+=(pebble)              # ACME CA (+ pebble-challtestsrv)
{ command -v named || test -x /usr/sbin/named; } >/dev/null 2>&1 || need+=(bind9)   # RFC 2136
command -v dig >/dev/null 2>&1 || need+=(bind9-dnsutils)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)  # cluster: shared state (+ redis-cli)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need+=(python3-venv)  # uvicorn's environment
command -v ss >/dev/null 2>&1 || need+=(iproute2)                 # the package test's port checks
command -v setpriv >/dev/null 2>&1 || need+=(util-linux)          # the package test runs the daemon as its user
command -v lintian >/dev/null 2>&1 || need+=(lintian)             # the package test lints the .deb
test -x /usr/sbin/haproxy || need+=(haproxy)                       # import-haproxy: the same requests through HAProxy
fi

if [ "${#need[@]}" -gt 0 ]; then
  sudo_cmd=()
  if [ "$(id -u)" != 0 ]; then sudo_cmd=(sudo); fi
  echo "setup: installing ${need[*]}"
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq "${need[@]}" >/dev/null
fi
command -v cargo >/dev/null 2>&1 || { echo "setup: cargo (the Rust toolchain) is required" >&2; exit 1; }
# cargo-fuzz runs the fuzz targets for a bounded time in scripts/test.sh (see scripts/fuzz.sh).
if [ "$build_only" != true ] && ! cargo fuzz --version >/dev/null 2>&1; then
  echo "setup: installing cargo-fuzz"
  cargo install --locked -q cargo-fuzz
fi
# uvicorn (with its default h11 parser) is the Python backend of the HTTP/2-to-HTTP/1 tests;
# opentelemetry-proto decodes what the traces test's OTLP receiver (tests/otlp_receiver.py) gets.
venv="$(dirname "$0")/../target/test-venv"
if [ "$build_only" != true ] \
  && ! "$venv/bin/python" -c 'import uvicorn, opentelemetry.proto' >/dev/null 2>&1; then
  echo "setup: installing uvicorn and opentelemetry-proto into target/test-venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q uvicorn opentelemetry-proto
fi
echo "setup: ok"
