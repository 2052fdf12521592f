#!/usr/bin/env bash
# Builds the ferrogate release binary the way it ships (the Debian package, the container image):
# profile-guided. An instrumented build first runs scripts/pgo/train.sh (loopback traffic of every
# kind an edge carries, through a Python backend), then the release build is compiled with the
# counts it recorded: hot paths laid out together and branches ordered by what the traffic took,
# code no traffic reached kept small. On the request path this cut the instructions per request
# by about a fifth (BENCHMARKS.md, "the release build is profile-guided"). Prints the binary's
# path.
#
#   scripts/build-release.sh [CARGO BUILD ARGS...]      e.g. --no-default-features
#   FERROGATE_PGO=0 scripts/build-release.sh ...         a plain release build (target/release)
#
# Builds into target/pgo/{instrumented,optimized} so that the plain target/release build
# (`cargo run --release`, the benchmarks' default) is left alone; the merged profile stays in
# target/pgo/ferrogate.profdata. Needs the toolchain's llvm-profdata (rustup's llvm-tools
# component, added when missing), h2load and curl (installed by `scripts/setup.sh --release`
# when missing) and python3. Two release builds, so several minutes longer than a plain one.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { echo "build-release: $*" >&2; }
fail() { say "FAILED: $*"; exit 1; }

if [ "${FERROGATE_PGO:-1}" = 0 ]; then
  say "FERROGATE_PGO=0: a plain release build, without profile guidance"
  cargo build --release --locked --bin ferrogate "$@" >&2
  echo "$PWD/target/release/ferrogate"
  exit 0
fi

scripts/setup.sh --release >&2   # what building needs, and the training run's clients
command -v python3 >/dev/null 2>&1 || fail "python3 is missing (the training run's backend)"

# llvm-profdata must be the one of rustc's own LLVM: the raw profile format follows LLVM.
sysroot=$(rustc --print sysroot)
host=$(rustc -vV | sed -n 's/^host: //p')
profdata="$sysroot/lib/rustlib/$host/bin/llvm-profdata"
if [ ! -x "$profdata" ]; then
  command -v rustup >/dev/null 2>&1 \
    || fail "$profdata is missing and there is no rustup to add it (component llvm-tools); FERROGATE_PGO=0 builds without profile guidance"
  say "adding the toolchain's llvm-tools component (llvm-profdata)"
  rustup component add llvm-tools >&2
  [ -x "$profdata" ] || fail "rustup added llvm-tools but $profdata is still missing"
fi

pgo=$PWD/target/pgo
rm -rf "$pgo/profiles" "$pgo/ferrogate.profdata"
mkdir -p "$pgo/profiles"

say "1/3: instrumented build (target/pgo/instrumented)"
RUSTFLAGS="${RUSTFLAGS:-} -Cprofile-generate=$pgo/profiles" CARGO_TARGET_DIR="$pgo/instrumented" \
  cargo build --release --locked --bin ferrogate "$@" >&2

say "2/3: training run"
scripts/pgo/train.sh "$pgo/instrumented/release/ferrogate" "$pgo/profiles"
"$profdata" merge -o "$pgo/ferrogate.profdata" "$pgo"/profiles/ferrogate-*.profraw >&2

say "3/3: optimized build (target/pgo/optimized)"
RUSTFLAGS="${RUSTFLAGS:-} -Cprofile-use=$pgo/ferrogate.profdata" CARGO_TARGET_DIR="$pgo/optimized" \
  cargo build --release --locked --bin ferrogate "$@" >&2
echo "$pgo/optimized/release/ferrogate"
