#!/usr/bin/env python3
"""ferrogate's inference routing against sglang-router and vllm-router, side by side.

Installs sglang-router 0.3.2 and vllm-router 0.1.17 (PyPI wheels with their Rust binaries) and
matplotlib into a virtual environment (target/peers-venv, made once), runs the `peers` scenario
of `cargo bench --bench inference_routing` (release build of the daemon; fresh simulated nodes
per run; the same seeded workload for every system), and saves its numbers as JSON and a chart
under benches/results/.

    python3 benches/inference_peers.py                    # every scenario, about 25 minutes
    BENCH_PEER_SCENARIOS=pressure BENCH_SECONDS=60 python3 benches/inference_peers.py  # eviction pressure
    BENCH_PEER_SCENARIOS=saturation,double python3 benches/inference_peers.py
    BENCH_SECONDS=40 BENCH_PEER_RATE=4.5 python3 benches/inference_peers.py

Every BENCH_* knob of the bench applies (BENCH_NODES, BENCH_TENANTS, BENCH_SEED, ...).
Only loopback addresses are used.
"""

import datetime
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = Path(os.environ.get("BENCH_PEERS_VENV", ROOT / "target" / "peers-venv"))
RESULTS = ROOT / "benches" / "results"
PACKAGES = ["sglang-router==0.3.2", "vllm-router==0.1.17", "matplotlib"]


def venv_python() -> Path:
    return VENV / "bin" / "python"


def ensure_venv() -> None:
    if not venv_python().exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    missing = subprocess.run(
        [str(venv_python()), "-c", "import sglang_router, vllm_router, matplotlib"],
        capture_output=True,
    ).returncode
    if missing:
        subprocess.run([str(venv_python()), "-m", "pip", "install", "-q", *PACKAGES], check=True)


def run_bench(json_path: Path) -> None:
    env = dict(os.environ)
    env["BENCH_PEERS_VENV"] = str(VENV)
    env["BENCH_PEERS_JSON"] = str(json_path)
    subprocess.run(
        ["cargo", "bench", "--bench", "inference_routing", "-j", "1", "--", "peers"],
        cwd=ROOT,
        env=env,
        check=True,
    )


CHART = r"""
import json, math, sys
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt

doc = json.load(open(sys.argv[1]))
scenarios = doc["scenarios"]
systems = []
for s in scenarios:
    for r in s["rows"]:
        if r["system"] not in systems:
            systems.append(r["system"])
metrics = [("ttft_p50", "TTFT p50 (s)"), ("ttft_p90", "TTFT p90 (s)"),
           ("requests_per_sec", "completed req/s"), ("prefix_hit_rate", "prefix hit rate")]
fig, axes = plt.subplots(len(metrics), 1, figsize=(12, 3.2 * len(metrics)))
width = 0.8 / max(1, len(systems))
for ax, (key, title) in zip(axes, metrics):
    for i, system in enumerate(systems):
        values = []
        for s in scenarios:
            row = next((r for r in s["rows"] if r["system"] == system), None)
            v = row.get(key) if row else None
            values.append(v if isinstance(v, (int, float)) and math.isfinite(v) else 0.0)
        xs = [j + (i - (len(systems) - 1) / 2) * width for j in range(len(scenarios))]
        ax.bar(xs, values, width, label=system)
    ax.set_xticks(range(len(scenarios)))
    ax.set_xticklabels([s["scenario"] for s in scenarios])
    ax.set_title(title)
    if key.startswith("ttft"):
        ax.set_yscale("log")
    ax.grid(axis="y", alpha=0.3)
axes[0].legend(fontsize=8, ncol=2)
k = doc["knobs"]
fig.suptitle(f"inference routing: {k['nodes']} nodes x {k['max_num_seqs']} seqs, {k['tenants']} tenants x "
             f"{k['system_tokens']}-token prompts, base rate {k['rate']} req/s, seed {k['seed']}")
fig.tight_layout()
fig.savefig(sys.argv[2], dpi=110)
"""


def chart(json_path: Path, png_path: Path) -> None:
    subprocess.run([str(venv_python()), "-c", CHART, str(json_path), str(png_path)], check=True)


def main() -> int:
    ensure_venv()
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.date.today().isoformat()
    name = os.environ.get("BENCH_PEERS_NAME", f"inference-peers-{stamp}")
    json_path = RESULTS / f"{name}.json"
    png_path = RESULTS / f"{name}.png"
    run_bench(json_path)
    chart(json_path, png_path)
    print(f"chart: {png_path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
