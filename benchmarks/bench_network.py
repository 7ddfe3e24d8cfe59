"""Seconds per round of networked node processes, next to the simulator on the same scenario.

    python benchmarks/bench_network.py [--nodes 10] [--rounds 30] [--repeats 3] [--insecure]

Runs the digits MLP on a ring, every node training every round, first in the
simulator, then as ``--nodes`` ``p2pfl node`` processes on 127.0.0.1 started by the
launcher (CurveZMQ unless ``--insecure``). A node's seconds per round is measured
from its own log, between the end of its first round and the end of its last
(start-up, imports and the handshake excluded). The network's figure is its pace:
from the moment every node has finished round 1 to the moment every node has
finished the last round, per round, that is the front of the synchronous rounds,
which goes at the pace of the slowest node. The slowest node's own figure is printed
beside it; it also counts start-up skew: a ring of processes started together on two
cores begins round 1 up to ~0.7 s apart (each node starts once its own neighbours said
hello), and the first nodes then wait that long in round 2, which moves one launch's
slowest-node figure by up to 0.02 s a round while the network's pace does not move.
The launch runs ``--repeats`` times and the medians are the figures, with the range
beside them. Target here: <= 0.3 s per round for 10 processes.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

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


class NetworkRun(NamedTuple):
    pace: float  # s/round of the front: every node's round 1 done -> every node's last done
    slowest: float  # the slowest node's s/round, first to last round of its own
    median: float  # the median node's
    wall: float  # the launch's wall seconds, start-up included


def network_seconds_per_round(sets: list[str], insecure: bool) -> NetworkRun:
    with tempfile.TemporaryDirectory(prefix="bench-network-") as tmp:
        out = Path(tmp)
        plan = plan_launch(None, sets, out, insecure=insecure)
        result = asyncio.run(launch(plan, plots=False))
        if result.failed:
            raise SystemExit("; ".join(e.describe() for e in result.failed))
        per_node, firsts, lasts = [], [], []
        for k in plan.nodes:
            rounds = [
                e for e in read_node_log(plan.node_dir / f"node-{k}.jsonl") if e["event"] == "round"
            ]
            firsts.append(rounds[0]["time"])
            lasts.append(rounds[-1]["time"])
            per_node.append((rounds[-1]["time"] - rounds[0]["time"]) / (len(rounds) - 1))
        pace = (max(lasts) - max(firsts)) / (len(rounds) - 1)
        return NetworkRun(pace, max(per_node), statistics.median(per_node), result.wall_seconds)


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
    pace = statistics.median(r.pace for r in runs)
    slowest = statistics.median(r.slowest for r in runs)
    median = statistics.median(r.median for r in runs)
    wall = statistics.median(r.wall for r in runs)

    def spread(values: list[float]) -> str:
        return f"{min(values):.4f}-{max(values):.4f}"

    links = "plain TCP" if args.insecure else "CurveZMQ"
    print(
        f"digits MLP, ring of {args.nodes}, {args.rounds} rounds, every node training every round"
    )
    rows = [
        ("simulator (1 process, 1 thread)", f"{sim:.4f} s/round"),
        (
            f"{args.nodes} node processes ({links})",
            f"{pace:.4f} s/round (network pace, median of {args.repeats} launches: "
            f"{spread([r.pace for r in runs])})",
        ),
        (
            "  slowest node, own rounds",
            f"{slowest:.4f} s/round ({spread([r.slowest for r in runs])}; with start-up skew)",
        ),
        ("  median node, own rounds", f"{median:.4f} s/round"),
        ("  launch wall", f"{wall:.1f} s incl. start-up"),
        ("network / simulator", f"{pace / sim:.1f}x"),
        (
            f"target <= {TARGET_S_PER_ROUND} s/round",
            "met" if pace <= TARGET_S_PER_ROUND else "NOT met",
        ),
    ]
    width = max(len(label) for label, _ in rows)
    for label, value in rows:
        print(f"  {label:<{width}}  {value}")


if __name__ == "__main__":
    main()
