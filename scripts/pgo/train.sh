#!/usr/bin/env bash
# The training run of the profile-guided build (scripts/build-release.sh): runs the instrumented
# ferrogate BIN on loopback in front of scripts/pgo/backend.py and sends it the traffic an edge in
# front of Open WebUI and inference nodes carries, so the compiler learns which paths are hot:
# HTTPS/1.1 keep-alive and h2 requests, new TLS connections, request bodies (Content-Length and
# h2 DATA), plain-HTTP redirects, Server-Sent Events, WebSockets, and OpenAI-style chat completions
# (streamed and not) balanced over two nodes by prompt prefix. Code no traffic reaches (ACME, error
# answers, reloads) is compiled as rarely run. Every step must succeed, so the run doubles as a
# smoke test of the release build; the profile is written when the daemon exits.
#
#   scripts/pgo/train.sh BIN PROFILE_DIR        (needs h2load, curl and python3)
set -euo pipefail

BIN=$1
DATA=$2
HERE=$(cd "$(dirname "$0")" && pwd)
DIR=$(mktemp -d /tmp/ferrogate-pgo-train-XXXXXX)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    rm -rf "$DIR"
}
trap cleanup EXIT
say() { echo "pgo-train: $*" >&2; }
fail() { say "FAILED: $*"; [ -f "$DIR/daemon.log" ] && tail -n 20 "$DIR/daemon.log" >&2; exit 1; }

for tool in h2load curl python3; do
    command -v "$tool" >/dev/null || fail "$tool is missing"
done

read -r HTTP HTTPS ADMIN NODE1 NODE2 BACKEND < <(python3 -c '
import socket
socks = [socket.socket() for _ in range(6)]
for s in socks: s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in socks])')

cat >"$DIR/ferrogate.yaml" <<EOF
state_dir: $DIR/state
workers: 1
listeners: { http: 127.0.0.1:$HTTP, https: 127.0.0.1:$HTTPS }
admin: { listen: 127.0.0.1:$ADMIN }
tls: { hsts: 1h }
routes:
  - { name: inference, path_prefix: /v1/, upstream: gpu }
  - { name: app, upstream: app }
upstreams:
  app:
    servers: [ { address: 127.0.0.1:$BACKEND } ]
    timeouts: { read: 60s, websocket_idle: 1h }
  gpu:
    servers:
      - { address: 127.0.0.1:$NODE1, max_inflight: 16 }
      - { address: 127.0.0.1:$NODE2, max_inflight: 16 }
    balance: cache_aware
    inference: { engine: vllm, models: discover, refresh: 1s }
    queue: { size: 256, timeout: 10s }
EOF

python3 "$HERE/backend.py" "$BACKEND" "$NODE1" "$NODE2" >"$DIR/backend.log" 2>&1 &
PIDS+=($!)
mkdir -p "$DATA"
LLVM_PROFILE_FILE="$DATA/ferrogate-%p-%m.profraw" FERROGATE_LOG=warn \
    "$BIN" run --config "$DIR/ferrogate.yaml" >"$DIR/daemon.log" 2>&1 &
daemon=$!
PIDS+=($daemon)

URL="https://localhost:$HTTPS"
up=false
for _ in $(seq 1 150); do
    if curl -skf "$URL/" -o /dev/null && curl -skf "$URL/v1/models" | grep -q train-llama; then
        up=true
        break
    fi
    kill -0 "$daemon" 2>/dev/null || fail "the daemon exited"
    sleep 0.2
done
[ "$up" = true ] || fail "the daemon did not answer on $URL (or found no model on the nodes)"

# load STATUS h2load-ARGS...: every request answered with a STATUS (2xx or 3xx) response.
load() {
    local want=$1 out codes
    shift
    out=$(h2load "$@" 2>&1) || fail "h2load $*: $out"
    grep -q "requests: .* 0 failed, 0 errored, 0 timeout" <<<"$out" || fail "h2load $*: $(grep requests: <<<"$out")"
    codes=$(grep "status codes:" <<<"$out")
    local n
    n=$(grep -oE "[0-9]+ succeeded" <<<"$out" | cut -d' ' -f1)
    grep -q "[ :]$n $want" <<<"$codes" || fail "h2load $*: not all $want: $codes"
    say "$n $want — h2load $*"
}

head -c 6000 /dev/zero | tr '\0' x >"$DIR/upload.bin"
for prompt in 0 1 2 3; do
    printf '{"model":"train-llama","stream":%s,"messages":[{"role":"system","content":"You are a helpful assistant for tenant %s."},{"role":"user","content":"Question %s: what does an edge load balancer do?"}]}' \
        "$([ $((prompt % 2)) = 0 ] && echo true || echo false)" "$prompt" "$prompt" >"$DIR/chat$prompt.json"
done

load 2xx --h1 -n 20000 -c 8 "$URL/"
load 2xx -n 20000 -c 4 -m 10 "$URL/"
for _ in 1 2 3 4 5; do
    load 2xx --h1 -n 200 -c 200 "$URL/"
    load 2xx -n 200 -c 200 "$URL/"
done
load 2xx --h1 -n 3000 -c 4 -d "$DIR/upload.bin" "$URL/upload"
load 2xx -n 3000 -c 4 -m 10 -d "$DIR/upload.bin" "$URL/upload"
load 3xx --h1 -n 3000 -c 4 "http://127.0.0.1:$HTTP/"
load 2xx --h1 -n 500 -c 10 "$URL/events"
load 2xx -n 500 -c 2 -m 10 "$URL/events"
for prompt in 0 1 2 3; do
    load 2xx --h1 -n 800 -c 8 -H 'content-type: application/json' -d "$DIR/chat$prompt.json" "$URL/v1/chat/completions"
    load 2xx -n 800 -c 2 -m 8 -H 'content-type: application/json' -d "$DIR/chat$prompt.json" "$URL/v1/chat/completions"
done
python3 "$HERE/ws_client.py" "$HTTPS" 100 50 >&2 || fail "WebSocket echo"
curl -sf "http://127.0.0.1:$ADMIN/metrics" -o /dev/null || fail "admin /metrics"

# A clean exit writes the profile.
kill -INT "$daemon"
for _ in $(seq 1 100); do
    kill -0 "$daemon" 2>/dev/null || break
    sleep 0.1
done
kill -0 "$daemon" 2>/dev/null && fail "the daemon did not stop on SIGINT"
wait "$daemon" 2>/dev/null || true
ls "$DATA"/ferrogate-*.profraw >/dev/null 2>&1 || fail "the daemon wrote no profile into $DATA"
say "ok"
