"""Bounded memory: RSS of every node process over a long networked run must stay flat.

    python benchmarks/bench_memory.py [--nodes 6] [--rounds 3000] [--every 250]

Runs ``p2pfl launch``'s own code (:func:`p2pfl.launcher.launch`, insecure, on
127.0.0.1) on a ring and, each time node 0 logs a multiple of ``--every`` rounds,
reads ``VmRSS`` from ``/proc/<pid>/status`` of every node process. Prints the
table, then per node the growth from the first sample after warm-up (round
``--every``) to the last, in KiB and percent: the baseline is that early sample,
measured in the same run. Flat means growth within a few percent (allocator
noise); a leak would grow with the round count.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from pathlib import Path
from typing import Any

from p2pfl.launcher import NodeFleet, launch, plan_launch


def vm_rss_kib(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=3000)
    parser.add_argument("--every", type=int, default=250)
    args = parser.parse_args()
    samples: dict[int, dict[int, int | None]] = {}

    def on_event(fleet: NodeFleet, node: int, event: dict[str, Any]) -> None:
        if node == 0 and event["event"] == "round" and event["round"] % args.every == 0:
            samples[event["round"]] = {k: vm_rss_kib(pid) for k, pid in fleet.pids.items()}

    with tempfile.TemporaryDirectory() as tmp:
        plan = plan_launch(
            None,
            [
                "run.name=memory",
                f"run.rounds={args.rounds}",
                f"run.eval_every={args.rounds}",
                "topology.kind=ring",
                f"topology.n={args.nodes}",
                "topology.params={}",
                "byzantine.count=0",
                "aggregator.name=mean",
                "aggregator.f=0",
                "network.round_timeout=5.0",
            ],
            Path(tmp),
            insecure=True,
        )
        result = asyncio.run(launch(plan, on_event=on_event, plots=False))
    if result.failed:
        raise SystemExit(f"node(s) failed: {[e.describe() for e in result.failed]}")
    nodes = sorted({k for s in samples.values() for k in s})
    print("round  " + "  ".join(f"node{k:>3} KiB" for k in nodes))
    for r in sorted(samples):
        print(f"{r:5d}  " + "  ".join(f"{samples[r].get(k) or 0:12d}" for k in nodes))
    first, last = min(samples), max(samples)
    print(f"growth from round {first} to round {last}:")
    worst = 0.0
    for k in nodes:
        a, b = samples[first].get(k), samples[last].get(k)
        if a is None or b is None:
            continue
        pct = 100.0 * (b - a) / a
        worst = max(worst, pct)
        print(f"  node {k}: {a} -> {b} KiB ({b - a:+d} KiB, {pct:+.1f}%)")
    print(f"worst growth: {worst:+.1f}% over {last - first} rounds")


if __name__ == "__main__":
    main()
