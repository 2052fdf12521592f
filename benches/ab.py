#!/usr/bin/env python3
"""A/B of two ferrogate binaries on the rows of benches/peers.py, in alternating rounds.

One run on these machines moves by ±10% from noise alone, more than most single changes are
worth. This runs peers.py for binary A and binary B in turn, ROUNDS times (A then B, then B then
A, so a slow drift of the machine falls on both), and prints the median of each figure for A and
B with B/A. Only the chosen rows run, without the direct-backend ceiling.

    cargo build --release && cp target/release/ferrogate /tmp/ferrogate-old   # before the change
    ...change, build...
    python3 benches/ab.py /tmp/ferrogate-old target/release/ferrogate
    ROUNDS=8 ROWS=keepalive,new_tls DURATION=5 python3 benches/ab.py OLD NEW
    PEERS=ferrogate,haproxy python3 benches/ab.py OLD NEW   # also HAProxy in each round

Environment: ROUNDS (default 5), ROWS (default keepalive,h2), DURATION seconds per row (default
5), PEERS (default ferrogate): other proxies run in every round, so their medians show how much
the machine itself moved. peers.sh installs the tools peers.py needs; run it once first.
"""

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peers import FIGURES, figure as result_figure  # noqa: E402  (the table's figures)

ROOT = Path(__file__).resolve().parent.parent
RESULT = ROOT / "target" / "bench" / "peers.json"


def one_run(binary, peers, env):
    """Runs peers.py once with `binary` as ferrogate; returns its results by proxy."""
    run_env = dict(os.environ, **env, FERROGATE_BIN=str(binary), DIRECT="0")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benches" / "peers.py"), *peers],
        env=run_env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        timeout=1800,
    )
    if proc.returncode != 0:
        sys.exit(f"peers.py failed for {binary}:\n{proc.stdout[-3000:]}")
    return json.loads(RESULT.read_text())["results"]


def figure(results, proxy, row, key):
    return result_figure(results.get(proxy, {}), row, key)


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    a, b = Path(sys.argv[1]).resolve(), Path(sys.argv[2]).resolve()
    for binary in (a, b):
        if not binary.is_file():
            sys.exit(f"no such binary: {binary}")
    rounds = int(os.environ.get("ROUNDS", "5"))
    rows = os.environ.get("ROWS", "keepalive,h2")
    peers = [p for p in os.environ.get("PEERS", "ferrogate").split(",") if p]
    if "ferrogate" not in peers:
        peers.insert(0, "ferrogate")
    env = {"ROWS": rows, "DURATION": os.environ.get("DURATION", "5")}

    # samples[(side, proxy, row, key)] = [values...]
    samples = {}
    for n in range(rounds):
        order = [("A", a), ("B", b)] if n % 2 == 0 else [("B", b), ("A", a)]
        for side, binary in order:
            results = one_run(binary, peers, env)
            for proxy in peers:
                for _, row, key, _, _ in FIGURES:
                    value = figure(results, proxy, row, key)
                    if value is not None:
                        samples.setdefault((side, proxy, row, key), []).append(value)
            fg = results.get("ferrogate", {})
            brief = ", ".join(
                f"{label.strip()} {figure(results, 'ferrogate', row, key):.1f}"
                for label, row, key, _, _ in FIGURES
                if figure(results, "ferrogate", row, key) is not None
            )
            print(f"round {n + 1}/{rounds} {side}: {brief}" if fg else f"round {n + 1} {side}: no result",
                  flush=True)

    print(f"\nA = {a}\nB = {b}\nmedians of {rounds} alternating rounds (ROWS={rows})\n")
    print("| metric | proxy | A | B | B/A | better |")
    print("|---|---|---|---|---|---|")
    for proxy in peers:
        for label, row, key, higher_better, _ in FIGURES:
            va, vb = samples.get(("A", proxy, row, key)), samples.get(("B", proxy, row, key))
            if not va or not vb:
                continue
            ma, mb = statistics.median(va), statistics.median(vb)
            ratio = f"{mb / ma:.3f}" if ma else "-"
            better = "-" if ma == mb else ("B" if (mb > ma) == higher_better else "A")
            print(f"| {label.strip()} | {proxy} | {ma:.2f} | {mb:.2f} | {ratio} | {better} |")
    # ferrogate relative to each peer within the same run, which cancels most of the machine's
    # drift between rounds: the median of the per-run ratios for A and for B.
    for proxy in peers[1:]:
        for label, row, key, higher_better, _ in FIGURES:
            per_side = {}
            for side in ("A", "B"):
                fg, peer = samples.get((side, "ferrogate", row, key)), samples.get((side, proxy, row, key))
                if fg and peer and len(fg) == len(peer):
                    ratios = [f / p for f, p in zip(fg, peer) if p]
                    if ratios:
                        per_side[side] = statistics.median(ratios)
            if len(per_side) == 2:
                ra, rb = per_side["A"], per_side["B"]
                better = "-" if ra == rb else ("B" if (rb > ra) == higher_better else "A")
                print(f"| {label.strip()}: ferrogate/{proxy} | per run | {ra:.3f} | {rb:.3f} | "
                      f"{rb / ra:.3f} | {better} |")


if __name__ == "__main__":
    main()
