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
    BENCH_SEEDS=7,13,17 BENCH_PEER_SCENARIOS=double BENCH_SECONDS=120 python3 benches/inference_peers.py

With BENCH_SEEDS, one run per seed (each with its own JSON and chart), then, per scenario and
peer, each seed's ratio and their median: one seed's tail is decided by a handful of requests,
and the same seed run twice moves a p90 by about a tenth, so a cell is read from the median.

Every BENCH_* knob of the bench applies (BENCH_NODES, BENCH_TENANTS, BENCH_SEED, ...).
Only loopback addresses are used.
"""

import datetime
import json
import math
import os
import statistics
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


def run_bench(json_path: Path, seed: str | None = None) -> None:
    env = dict(os.environ)
    if seed is not None:
        env["BENCH_SEED"] = seed
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


# Per scenario and peer, what the targets read (above 1 = ferrogate ahead), by JSON key.
RATIOS = [
    ("completed", None),
    ("TTFT p50", "ttft_p50_peer_over_ours"),
    ("TTFT p90", "ttft_p90_peer_over_ours"),
    ("hot tenant p90", "hot_tenant_ttft_p90_peer_over_ours"),
    ("other tenants p90", "other_tenants_ttft_p90_peer_over_ours"),
    ("prefix hit (points)", "prefix_hit_points"),
]


# ferrogate with KV events over ferrogate without (below 1 = the events helped), by JSON key;
# and what each mode's index predicted cached over what the nodes hit.
KV_RATIOS = [
    ("KV events: TTFT p50 with over without", "ttft_p50"),
    ("KV events: TTFT p90 with over without", "ttft_p90"),
    ("KV events: prefix hit (points)", "prefix_hit_points"),
    ("predicted / hit, with KV events", "predicted_over_hit_exact"),
    ("predicted / hit, without", "predicted_over_hit_approximate"),
]

# The row the bench's ratios compare with each peer.
OURS = "ferrogate cache_aware"


def seed_ratios(doc: dict) -> dict:
    """{(scenario, peer, ratio name): value} for one seed's run."""
    out = {}
    for scenario in doc["scenarios"]:
        rows = {r["system"]: r for r in scenario["rows"]}
        ours = rows.get(OURS)
        for ratio in scenario.get("ratios", []):
            peer = ratio["peer"]
            for label, key in RATIOS:
                if "tenant" in label and scenario["scenario"] != "hot":
                    continue  # only the hot scenario has a hot tenant
                if key is None:
                    theirs = rows.get(peer, {}).get("done")
                    value = ours["done"] / theirs if ours and theirs else None
                else:
                    value = ratio.get(key)
                if isinstance(value, (int, float)) and math.isfinite(value):
                    out[(scenario["scenario"], peer, label)] = value
        kv = scenario.get("kv_events_over_approximate") or {}
        for label, key in KV_RATIOS:
            value = kv.get(key)
            if isinstance(value, (int, float)) and math.isfinite(value):
                out[(scenario["scenario"], "ferrogate without KV events", label)] = value
    return out


def summarize_seeds(seeds: list[str], docs: list[dict]) -> dict:
    """Prints each seed's ratio and the median per (scenario, peer, ratio); returns them."""
    per_seed = [seed_ratios(d) for d in docs]
    keys = []
    for ratios in per_seed:
        keys.extend(k for k in ratios if k not in keys)
    print(f"\n## every seed ({', '.join(seeds)}): peer's over ferrogate's (above 1 = ferrogate ahead);"
          " completed: ferrogate's over the peer's; prefix hit: ferrogate's minus the peer's;"
          " KV events: with over without (below 1 = the events helped)\n")
    print(f"| scenario | peer | ratio | {' | '.join('seed ' + s for s in seeds)} | median |")
    print(f"|---|---|---|{'---:|' * (len(seeds) + 1)}")
    summary = []
    for key in keys:
        values = [r.get(key) for r in per_seed]
        present = [v for v in values if v is not None]
        median = statistics.median(present) if present else None
        cells = ["–" if v is None else f"{v:.2f}" for v in values]
        print(f"| {key[0]} | {key[1]} | {key[2]} | {' | '.join(cells)} | "
              f"{'–' if median is None else f'{median:.2f}'} |")
        summary.append({"scenario": key[0], "peer": key[1], "ratio": key[2],
                        "by_seed": dict(zip(seeds, values)), "median": median})
    return {"seeds": seeds, "ratios": summary}


def main() -> int:
    ensure_venv()
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.date.today().isoformat()
    name = os.environ.get("BENCH_PEERS_NAME", f"inference-peers-{stamp}")
    seeds = [s.strip() for s in os.environ.get("BENCH_SEEDS", "").split(",") if s.strip()]
    if not seeds:
        json_path = RESULTS / f"{name}.json"
        png_path = RESULTS / f"{name}.png"
        run_bench(json_path)
        chart(json_path, png_path)
        print(f"chart: {png_path.relative_to(ROOT)}")
        return 0
    docs = []
    for seed in seeds:
        json_path = RESULTS / f"{name}-seed{seed}.json"
        png_path = RESULTS / f"{name}-seed{seed}.png"
        run_bench(json_path, seed)
        chart(json_path, png_path)
        print(f"chart: {png_path.relative_to(ROOT)}")
        docs.append(json.loads(json_path.read_text()))
    if not any(seed_ratios(d) for d in docs):
        print(f"\nno ratios to gather: {OURS} did not run beside a peer or without KV events")
        return 0
    summary = summarize_seeds(seeds, docs)
    (RESULTS / f"{name}-seeds.json").write_text(json.dumps(summary, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
