#!/usr/bin/env bash
# Side-by-side load benchmark: ferrogate, HAProxy, nginx and Caddy, each with one worker thread,
# in front of the same local nginx backend, driven by wrk and h2load on loopback. Prints a table of
# each figure and ferrogate's ratio to each peer, with the backend reached directly as the ceiling;
# writes target/bench/peers.json and target/bench/peers.png.
#
#   benches/peers.sh                 # full run (about 4 minutes)
#   DURATION=3 WS_CONNECTIONS=1000 benches/peers.sh   # a quick smoke run
#
# Installs what it needs (haproxy, nginx, caddy, wrk, nghttp2-client, matplotlib) when missing.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
for pair in haproxy:haproxy nginx:nginx caddy:caddy wrk:wrk h2load:nghttp2-client openssl:openssl; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || need+=("${pair##*:}")
done
if [ "${#need[@]}" -gt 0 ]; then
  sudo_cmd=()
  [ "$(id -u)" = 0 ] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq "${need[@]}" >/dev/null
fi
python3 -c "import matplotlib" 2>/dev/null || python3 -m pip install -q matplotlib
# The distribution starts its own nginx/haproxy on install; they are not part of the benchmark.
for svc in nginx haproxy caddy; do
  (service "$svc" stop >/dev/null 2>&1 || true)
done

scripts/setup.sh >/dev/null
cargo build --release --locked --bin ferrogate
exec python3 benches/peers.py "$@"
