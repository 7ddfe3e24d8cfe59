"""Seconds per round of networked node processes, next to the simulator on the same scenario.

    python benchmarks/bench_network.py [--nodes 10] [--rounds 30] [--repeats 3] [--insecure]

Runs the digits MLP on a ring, every node training every round, first in the
simulator, then as ``--nodes`` ``p2pfl node`` processes on 127.0.0.1 started by the
launcher (CurveZMQ unless ``--insecure``). A node's seconds per round is measured
from its own log, between the end of its first round and the end of its last
(start-up, imports and the handshake excluded); the network's figure is the
slowest node's, since synchronous rounds go at the pace of the slowest. The launch
runs ``--repeats`` times and the median is the figure, with the range beside it: a
ring of processes started together on two cores begins round 1 up to ~0.7 s apart
(each node starts once its own neighbours said hello), and the first nodes then wait
that long in round 2, which moves one launch's figure by up to 0.02 s a round.
Target here: <= 0.3 s per round for 10 processes.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import torch

from p2pfl.config import load_scenario
from p2pfl.experiment import build_experiment
from p2pfl.launcher import launch, plan_launch
from p2pfl.node import read_node_log
from p2pfl.sim import Simulation

TARGET_S_PER_ROUND = 0.3


def overrides(nodes: int, rounds: int) -> list[str]:
    return [
        "run.name=bench-network",
        f"run.rounds={rounds}",
        "topology.kind=ring",
        f"topology.n={nodes}",
        "topology.params={}",
        "byzantine.count=0",
    ]


def sim_seconds_per_round(sets: list[str]) -> float:
    torch.set_num_threads(1)  # as every node process; on 2 busy cores more threads only cost
    sim = Simulation(build_experiment(load_scenario(None, sets)))
    sim.step()  # first-call set-up of torch.func, excluded as for the nodes
    start = time.perf_counter()
    rounds = sim.exp.scenario.run.rounds - 1
    for _ in range(rounds):
        sim.step()
        if sim.round % sim.exp.scenario.run.eval_every == 0:
            sim.evaluate()
    return (time.perf_counter() - start) / rounds


def network_seconds_per_round(sets: list[str], insecure: bool) -> tuple[float, float, float]:
    """(slowest node's s/round, median node's s/round, launch wall seconds)."""
    with tempfile.TemporaryDirectory(prefix="bench-network-") as tmp:
        out = Path(tmp)
        plan = plan_launch(None, sets, out, insecure=insecure)
        result = asyncio.run(launch(plan, plots=False))
        if result.failed:
            raise SystemExit("; ".join(e.describe() for e in result.failed))
        per_node = []
        for k in plan.nodes:
            rounds = [
                e for e in read_node_log(plan.node_dir / f"node-{k}.jsonl") if e["event"] == "round"
            ]
            per_node.append((rounds[-1]["time"] - rounds[0]["time"]) / (len(rounds) - 1))
        return max(per_node), statistics.median(per_node), result.wall_seconds


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--nodes", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3, help="launches (median reported)")
    parser.add_argument("--insecure", action="store_true", help="without CurveZMQ")
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    sets = overrides(args.nodes, args.rounds)

    sim = sim_seconds_per_round(sets)
    runs = [network_seconds_per_round(sets, args.insecure) for _ in range(args.repeats)]
    slowest = statistics.median(r[0] for r in runs)
    median = statistics.median(r[1] for r in runs)
    wall = statistics.median(r[2] for r in runs)
    spread = f"{min(r[0] for r in runs):.4f}-{max(r[0] for r in runs):.4f}"

    links = "plain TCP" if args.insecure else "CurveZMQ"
    print(
        f"digits MLP, ring of {args.nodes}, {args.rounds} rounds, every node training every round"
    )
    rows = [
        ("simulator (1 process, 1 thread)", f"{sim:.4f} s/round"),
        (
            f"{args.nodes} node processes ({links})",
            f"{slowest:.4f} s/round (slowest node, median of {args.repeats} launches: "
            f"{spread}; median node {median:.4f}; launch wall {wall:.1f} s incl. start-up)",
        ),
        ("network / simulator", f"{slowest / sim:.1f}x"),
        (
            f"target <= {TARGET_S_PER_ROUND} s/round",
            "met" if slowest <= TARGET_S_PER_ROUND else "NOT met",
        ),
    ]
    width = max(len(label) for label, _ in rows)
    for label, value in rows:
        print(f"  {label:<{width}}  {value}")


if __name__ == "__main__":
    main()
