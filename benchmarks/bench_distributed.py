"""The distributed simulator on this machine, and how many nodes fit in a memory budget.

    python benchmarks/bench_distributed.py [--scenario sims/large-2048.toml] [--rounds 5]
        [--ranks 1,2] [--repeat 2] [--memory-nodes 1024,4096,16384] [--budget-gib 24]
        [--skip-memory]

**Time.** The scenario runs ``--rounds`` rounds (one evaluation, after the last) as

* the single-process simulator (``p2pfl sim``, one torch thread: the baseline);
* ``torchrun --nproc-per-node K -m p2pfl sim`` for each ``K`` in ``--ranks`` (torchrun
  gives each rank one thread);

each in its own process, in this run (best of ``--repeat``), and prints the simulation's wall time (the
round loop, ``summary.json``'s ``wall_seconds``; start-up and data loading
excluded), seconds per round, the ratio to the baseline, the halo bytes every rank
sends per round, summed over ranks, and the partition. On a 2-core machine ``K=2``
cannot beat one process by much: the ranks share the cores with each other (and
with whatever else runs); the ratio shows the overhead of the exchange, not the
speed-up of a cluster.

**Memory.** For ``logreg`` and the default MLP (``hidden = [64]``), a random
8-regular graph of each size in ``--memory-nodes`` runs two rounds (ALIE attackers,
median) in a fresh process whose peak RSS is measured (``ru_maxrss``). A line through
the two smallest sizes, ``rss = fixed + per_node * N``, gives the largest ``N`` that
fits in ``--budget-gib`` GiB on one machine (one rank), **extrapolated** from the
measured peaks (further sizes check the line) and printed as such: the sizes are
measured, the limit is not. Every cost is linear in ``N``: the mixing matrix is kept
by rows (:func:`p2pfl.topology.mixing_weights`, ``O(N + E)``), not as the dense
``8 N^2`` bytes that would cap one process near 56,000 nodes in 24 GiB.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

from p2pfl.transport import free_tcp_ports

ROOT = Path(__file__).resolve().parents[1]


def _env() -> dict[str, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def run_sim(scenario: str, rounds: int, ranks: int | None, out: Path) -> dict:
    """``summary.json`` of one run: ``ranks`` None is the single process."""
    sets = [f"run.rounds={rounds}", f"run.eval_every={rounds}"]
    args = ["-m", "p2pfl", "sim", scenario, "--out", str(out), "--quiet"]
    args += [a for s in sets for a in ("--set", s)]
    if ranks is None:
        cmd = [sys.executable, *args]
    else:
        (port,) = free_tcp_ports(1)
        cmd = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            f"--nproc-per-node={ranks}",
            "--master-addr=127.0.0.1",
            f"--master-port={port}",
            *args,
        ]
    subprocess.run(cmd, check=True, env=_env(), capture_output=True, cwd=ROOT)
    return json.loads((out / "summary.json").read_text())


def timing(scenario: str, rounds: int, ranks: list[int], repeat: int) -> None:
    print(
        f"== time: {scenario}, {rounds} rounds (one torch thread per process; "
        f"best of {repeat}, the runs interleaved)"
    )
    with tempfile.TemporaryDirectory() as tmp:
        best: dict[int | None, dict] = {}
        for r in range(repeat):
            for k in [None, *ranks]:
                got = run_sim(scenario, rounds, k, Path(tmp) / f"{k}-{r}")
                if k not in best or got["wall_seconds"] < best[k]["wall_seconds"]:
                    best[k] = got
        base = best[None]
        print(
            f"{'run':<16} {'wall s':>8} {'s/round':>8} {'vs 1 proc':>9} "
            f"{'halo MB/round':>14}  partition"
        )
        t0 = base["wall_seconds"]
        acc0 = base["history"][-1]["honest_accuracy_mean"]
        print(f"{'single process':<16} {t0:8.2f} {t0 / rounds:8.3f} {1.0:9.2f} {0.0:14.2f}  -")
        for k in ranks:
            s = best[k]
            d = s["distributed"]
            t = s["wall_seconds"]
            same = abs(s["history"][-1]["honest_accuracy_mean"] - acc0) <= 1e-6
            print(
                f"{f'torchrun K={k}':<16} {t:8.2f} {t / rounds:8.3f} {t / t0:9.2f} "
                f"{d['halo_bytes_per_round'] / 1e6:14.2f}  {d['partition']}, "
                f"{d['cut_edges']} edges cut, nodes per rank {d['nodes_per_rank']}"
                + ("" if same else "  (ACCURACY DIFFERS FROM THE SINGLE PROCESS)")
            )


MEMORY_SETS = [
    "run.rounds=2",
    "run.eval_every=2",
    "topology.kind=random_regular",
    "topology.params={degree=8}",
    "byzantine.attack=alie",
    "aggregator.name=median",
    "aggregator.f=1",
]


def measure(nodes: int, model: str) -> None:
    """(Child) run two rounds of ``nodes`` nodes; print peak RSS in bytes and d as JSON."""
    import torch

    from p2pfl.config import load_scenario
    from p2pfl.experiment import build_experiment
    from p2pfl.sim import Simulation

    torch.set_num_threads(1)
    sets = [*MEMORY_SETS, f"topology.n={nodes}", f"byzantine.count={nodes // 10}"]
    # the 1,437 training digits dealt with overlap, ~6-11 examples per node at every size
    copies = max(8, -(-nodes // 256))
    sets.append(f"data.partition_params={{allow_overlap=true,copies={copies}}}")
    sets.append(f"model.name={model}")
    if model == "mlp":
        sets.append("model.params={hidden=[64]}")
    exp = build_experiment(load_scenario(None, sets))
    Simulation(exp).run()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    w = exp.mixing
    mixing = w.values.nbytes + w.indices.nbytes + w.indptr.nbytes
    print(json.dumps({"rss": peak, "d": int(exp.initial.numel()), "mixing": mixing}))


def memory(sizes: list[int], budget_gib: float) -> None:
    print(f"== memory: peak RSS of one process, 2 rounds; budget {budget_gib:g} GiB")
    budget = budget_gib * 2**30
    for model in ("logreg", "mlp"):
        points = []
        for n in sizes:
            done = subprocess.run(
                [sys.executable, __file__, "--measure", str(n), model],
                check=True,
                env=_env(),
                capture_output=True,
                text=True,
                cwd=ROOT,
            )
            got = json.loads(done.stdout.strip().splitlines()[-1])
            points.append((n, got["rss"]))
            print(
                f"{model:<7} d={got['d']:<6} N={n:<7} peak RSS {got['rss'] / 2**20:8.1f} MiB, "
                f"of which the mixing weights {got['mixing'] / 2**20:5.2f} MiB (measured)"
            )
        (n1, r1), (n2, r2) = points[0], points[1]
        per_node = (r2 - r1) / (n2 - n1)
        fixed = r1 - per_node * n1
        largest = int((budget - fixed) / per_node)
        for n, rss in points[2:]:
            print(
                f"{model:<7} N={n}: the line predicts {(fixed + per_node * n) / 2**20:.0f} MiB, "
                f"measured {rss / 2**20:.0f} MiB"
            )
        print(
            f"{model:<7} {per_node / 1024:.1f} KiB per node, {fixed / 2**20:.0f} MiB fixed: "
            f"about {largest:,} nodes fit in {budget_gib:g} GiB on one rank "
            f"(EXTRAPOLATED from the measured N={n1} and N={n2})"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", default="sims/large-2048.toml")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--ranks", default="1,2")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--memory-nodes", default="1024,4096,16384")
    parser.add_argument("--budget-gib", type=float, default=24.0)
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--measure", nargs=2, metavar=("N", "MODEL"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        measure(int(args.measure[0]), args.measure[1])
        return
    timing(args.scenario, args.rounds, [int(k) for k in args.ranks.split(",")], args.repeat)
    if not args.skip_memory:
        memory(sorted(int(n) for n in args.memory_nodes.split(",")), args.budget_gib)


if __name__ == "__main__":
    main()
