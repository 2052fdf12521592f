#!/usr/bin/env bash
# User-space instructions per request, counted by valgrind's callgrind: ferrogate, HAProxy and
# nginx in turn, each with the configuration benches/peers.py gives it (the same routes, the same
# forwarding headers and request id), in front of one nginx backend, over N keep-alive HTTPS/1.1
# requests and N h2 requests (h2load, 4 connections). Instruction counts do not move with the
# machine's load the way CPU time does, so two builds (or a build and HAProxy) compare on a noisy
# machine; kernel time (about half of a keep-alive request) is not counted, and instructions are
# not cycles.
#
#   benches/instructions.sh                       # target/release/ferrogate and haproxy
#   FERROGATE_BIN=/tmp/ferrogate-old PROXIES=ferrogate benches/instructions.sh
#   PROXIES=ferrogate,nginx KEEP=/tmp/cg benches/instructions.sh   # keep the dumps (callgrind_annotate)
#
# nginx runs as one process (master_process off), its worker's work counted the same way.
#
# Needs valgrind, h2load (nghttp2-client), nginx, haproxy and curl (apt-get install valgrind
# nghttp2-client nginx haproxy curl).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${FERROGATE_BIN:-$ROOT/target/release/ferrogate}
N=${N:-4000}
PROXIES=${PROXIES:-ferrogate haproxy}
PROXIES=${PROXIES//,/ }
DIR=$(mktemp -d /tmp/ferrogate-instructions-XXXXXX)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    rm -rf "$DIR"
}
trap cleanup EXIT

for tool in valgrind callgrind_control h2load nginx curl openssl python3; do
    command -v "$tool" >/dev/null || { echo "missing: $tool" >&2; exit 1; }
done

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -keyout "$DIR/key.pem" -out "$DIR/cert.pem" -subj /CN=localhost \
    -addext subjectAltName=DNS:localhost >/dev/null 2>&1
cat "$DIR/cert.pem" "$DIR/key.pem" >"$DIR/combined.pem"

read -r PORT BACKEND DEMO ADMIN < <(python3 -c '
import socket
socks = [socket.socket() for _ in range(4)]
for s in socks: s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in socks])')

cat >"$DIR/backend.conf" <<EOF
worker_processes 1; daemon off; pid $DIR/backend.pid; error_log $DIR/backend.err;
events { worker_connections 1000; }
http { access_log off; server { listen 127.0.0.1:$BACKEND; keepalive_requests 1000000;
  location / { return 200 "hello from the backend\n"; } } }
EOF
nginx -c "$DIR/backend.conf" -p "$DIR" &
PIDS+=($!)

python3 - "$ROOT" "$DIR" "$PORT" "$BACKEND" "$DEMO" "$ADMIN" <<'EOF'
import sys
from pathlib import Path
sys.path.insert(0, sys.argv[1] + "/benches")
import peers
d = Path(sys.argv[2])
port, backend, demo, admin = (int(x) for x in sys.argv[3:7])
confs = peers.configs(d, d / "cert.pem", d / "key.pem", port, backend, demo, admin)
(d / "ferrogate.yaml").write_text(confs["ferrogate"])
(d / "haproxy.cfg").write_text(confs["haproxy"])
# One process: the master's fork would leave the worker outside callgrind's count.
(d / "nginx.conf").write_text("master_process off;\n" + confs["nginx"])
EOF

URL="https://localhost:$PORT/"
declare -A RESULT
for proxy in $PROXIES; do
    case $proxy in
        ferrogate) cmd=("$BIN" run --config "$DIR/ferrogate.yaml") ;;
        haproxy) cmd=(haproxy -db -f "$DIR/haproxy.cfg") ;;
        nginx) cmd=(nginx -c "$DIR/nginx.conf" -p "$DIR") ;;
        *) echo "unknown proxy: $proxy" >&2; exit 1 ;;
    esac
    FERROGATE_LOG=warn valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$DIR/cg-$proxy" \
        "${cmd[@]}" >"$DIR/$proxy.log" 2>&1 &
    pid=$!
    PIDS+=($pid)
    for _ in $(seq 1 300); do
        curl -skf "$URL" -o /dev/null && break
        sleep 1
    done
    callgrind_control -i on "$pid" >/dev/null 2>&1
    # Warm up: pools, caches, lazily built state.
    h2load --h1 -n 200 -c 4 "$URL" >/dev/null 2>&1
    h2load -n 200 -c 4 -m 10 "$URL" >/dev/null 2>&1
    part=0
    for mode in h1 h2; do
        part=$((part + 1))
        callgrind_control -z "$pid" >/dev/null 2>&1
        if [ "$mode" = h1 ]; then
            h2load --h1 -n "$N" -c 4 "$URL" >"$DIR/$mode.out" 2>&1
        else
            h2load -n "$N" -c 4 -m 10 "$URL" >"$DIR/$mode.out" 2>&1
        fi
        grep -q "$N succeeded, 0 failed" "$DIR/$mode.out" || { cat "$DIR/$mode.out" >&2; exit 1; }
        callgrind_control -d "$mode" "$pid" >/dev/null 2>&1
        dump="$DIR/cg-$proxy.$part"
        total=
        for _ in $(seq 1 60); do
            total=$(grep -sE '^(summary|totals):' "$dump" | head -1 | awk '{print $2}' || true)
            [ -n "$total" ] && break
            sleep 1
        done
        [ -n "$total" ] || { echo "no callgrind dump for $proxy $mode" >&2; exit 1; }
        RESULT[$proxy.$mode]=$((total / N))
        if [ -n "${KEEP:-}" ]; then
            mkdir -p "$KEEP"
            cp "$dump" "$KEEP/$proxy-$mode.callgrind"
        fi
    done
    kill "$pid"
    wait "$pid" 2>/dev/null || true
done

echo "| user-space instructions per request ($N requests, 4 connections) | ${PROXIES// / | } |"
echo "|---|$(for _ in $PROXIES; do printf -- '---:|'; done)"
for mode in h1 h2; do
    label=$([ "$mode" = h1 ] && echo "HTTPS/1.1 keep-alive" || echo "h2, 10 streams per connection")
    printf '| %s |' "$label"
    for proxy in $PROXIES; do printf ' %s |' "${RESULT[$proxy.$mode]}"; done
    echo
done
for peer in haproxy nginx; do
    if [[ " $PROXIES " == *" ferrogate "* && " $PROXIES " == *" $peer "* ]]; then
        for mode in h1 h2; do
            python3 -c "import sys; print(f'{sys.argv[1]}: {sys.argv[2]} / ferrogate = {int(sys.argv[3]) / int(sys.argv[4]):.2f}x (above 1: ferrogate runs fewer)')" \
                "$mode" "$peer" "${RESULT[$peer.$mode]}" "${RESULT[ferrogate.$mode]}"
        done
    fi
done
