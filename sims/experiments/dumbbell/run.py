"""Experiment (b): the dumbbell with data split by clique. ``python run.py`` regenerates
``topologies/``, ``results.csv``, ``results.md``, ``cliques.md``, ``cliques.png`` and
``curves.png`` in this folder (finished runs are kept in ``cells/`` and skipped).

1. For each seed, the scenario's partition (one digit class per node) is computed with
   the plain dumbbell, and a dumbbell topology file is written whose first clique holds
   the nodes of classes 0-4 and whose second clique those of classes 5-9, joined by one
   edge. The partition depends only on the data, ``n`` and the seed, not on the graph,
   which the script checks by rebuilding the experiment from the file.
2. ``p2pfl.sweep`` runs the rules for each seed (two at a time), plus a reference: gossip
   on a complete graph with the same data split (what perfect mixing would reach).
3. Per-clique and global honest accuracy are read from each run's per-node final
   accuracies (every node is evaluated on the same, all-class test set).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import networkx as nx
import numpy as np

from p2pfl.config import load_scenario
from p2pfl.experiment import build_experiment
from p2pfl.sweep import parse_grid, plan_sweep, run_sweep, write_outputs
from p2pfl.topology import Topology, draw, load_topology, save_topology

HERE = Path(__file__).resolve().parent
SCENARIO = HERE / "scenario.toml"
SEEDS = (0, 1, 2)
RULES = "gossip,clipped_gossip,trimmed_mean,geometric_median"
LOW = 5  # classes 0..4 go to clique A
# The same data split with perfect mixing: what the bridge costs.
REFERENCE = "gossip on complete graph (ref.)"

Record = dict[str, Any]


def node_classes(seed: int) -> list[int]:
    exp = build_experiment(load_scenario(SCENARIO, [f"run.seed={seed}"]))
    out = []
    for idx in exp.parts:
        labels = np.unique(exp.train.y.numpy()[idx])
        if labels.size != 1:
            raise SystemExit(f"seed {seed}: a node holds classes {labels}; expected one class")
        out.append(int(labels[0]))
    return out


def class_aligned_dumbbell(seed: int) -> tuple[Path, list[int], list[int]]:
    """Write the seed's topology file; return it and the nodes of classes 0-4 and 5-9."""
    classes = node_classes(seed)
    a = [i for i, c in enumerate(classes) if c < LOW]
    b = [i for i, c in enumerate(classes) if c >= LOW]
    if len(a) != len(b):
        raise SystemExit(f"seed {seed}: cliques of {len(a)} and {len(b)} nodes; expected equal")
    graph = nx.Graph()
    graph.add_nodes_from(range(len(classes)))
    graph.add_edges_from(
        (u, v) for group in (a, b) for k, u in enumerate(group) for v in group[k + 1 :]
    )
    graph.add_edge(a[-1], b[0])  # the bridge
    path = HERE / "topologies" / f"by-class-seed{seed}.toml"
    save_topology(Topology(graph=graph, name=f"dumbbell-by-class-seed{seed}"), path)
    rebuilt = build_experiment(
        load_scenario(SCENARIO, [f"run.seed={seed}", f"topology.file={path}"])
    )
    if [int(rebuilt.train.y[i[0]]) for i in rebuilt.parts] != classes:
        raise SystemExit(f"seed {seed}: the partition changed with the topology file")
    if sorted(cliques(path)) != sorted([a, b]):
        raise SystemExit(f"seed {seed}: the file's cliques are not the class groups")
    return path, a, b


def cliques(path: Path) -> tuple[list[int], list[int]]:
    """The two cliques of a dumbbell file: its components once the bridge is removed."""
    graph = load_topology(path).graph.copy()
    graph.remove_edges_from(list(nx.bridges(graph)))
    first, second = sorted((sorted(c) for c in nx.connected_components(graph)), key=min)
    return first, second


def main() -> int:
    files = {s: class_aligned_dumbbell(s) for s in SEEDS}
    records = []
    for seed, (path, low, high) in files.items():
        overrides = [f"run.seed={seed}", f"topology.file={path.relative_to(HERE)}"]
        planned = plan_sweep(SCENARIO, parse_grid([f"aggregator.name={RULES}"]), overrides)
        complete = [f"run.seed={seed}", "topology.kind=complete"]
        planned += plan_sweep(SCENARIO, parse_grid(["aggregator.name=gossip"]), complete)
        done = run_sweep(planned, HERE, jobs=2)
        done.records[-1]["values"]["aggregator.name"] = REFERENCE
        for rec in done.records:
            if rec["status"] != "ok":
                raise SystemExit(f"{rec['values']} seed {seed} failed: {rec['error']}")
            acc = rec["final_accuracy"]
            rec["clique_low"] = float(np.mean([acc[i] for i in low]))
            rec["clique_high"] = float(np.mean([acc[i] for i in high]))
        records += done.records
    keys = ["aggregator.name"]
    spec = {
        "scenario": "scenario.toml",
        "grid": [f"aggregator.name={RULES}"],
        "reference": "aggregator.name=gossip, topology.kind=complete",
        "seeds": list(SEEDS),
    }
    write_outputs(HERE, records, keys, spec, axes=None, title="dumbbell")
    (HERE / "heatmap.png").unlink(missing_ok=True)  # one swept key: the tables say it all
    write_clique_table(records)
    plot_cliques(records)
    plot_curves(records)
    draw(load_topology(files[0][0]), HERE / "topology.png")
    print((HERE / "cliques.md").read_text())
    return 0


def _by_rule(records: list[Record]) -> dict[str, list[Record]]:
    out: dict[str, list[Record]] = {}
    for r in records:
        out.setdefault(r["values"]["aggregator.name"], []).append(r)
    return out


def _stat(runs: list[Record], key: str) -> str:
    xs = [float(r[key]) for r in runs]
    return f"{np.mean(xs):.3f} ± {np.std(xs, ddof=1):.3f}" if len(xs) > 1 else f"{xs[0]:.3f}"


def write_clique_table(records: list[Record]) -> None:
    lines = [
        "| rule | clique 0-4 acc | clique 5-9 acc | global acc (all honest) | worst node | consensus dist |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for rule, runs in _by_rule(records).items():
        worst = min(float(r["honest_accuracy_min"]) for r in runs)
        lines.append(
            f"| {rule} | {_stat(runs, 'clique_low')} | {_stat(runs, 'clique_high')} | {_stat(runs, 'honest_accuracy_mean')} "
            f"| {worst:.3f} | {np.mean([r['consensus_distance'] for r in runs]):.3g} |"
        )
    text = (
        "# Dumbbell: final test accuracy per clique and globally\n\n"
        f"Mean ± standard deviation over seeds {', '.join(map(str, SEEDS))}; every node is "
        "tested on all ten classes, so a clique that learnt only its own five classes scores "
        "about 0.5. 'worst node': the lowest final accuracy of any node in any seed.\n\n"
    )
    (HERE / "cliques.md").write_text(text + "\n".join(lines) + "\n")


def plot_cliques(records: list[Record]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rules = _by_rule(records)
    fig, ax = plt.subplots(figsize=(6.5, 3.6), dpi=100)
    width = 0.27
    for k, (key, label) in enumerate(
        [
            ("clique_low", "clique 0-4"),
            ("clique_high", "clique 5-9"),
            ("honest_accuracy_mean", "global"),
        ]
    ):
        means = [np.mean([r[key] for r in runs]) for runs in rules.values()]
        lows = [np.min([r[key] for r in runs]) for runs in rules.values()]
        x = np.arange(len(rules)) + (k - 1) * width
        ax.bar(x, means, width, label=label)
        ax.scatter(x, lows, marker="_", color="black", zorder=3)
    ax.set_xticks(range(len(rules)), list(rules), fontsize=8, rotation=12)
    ax.set_ylim(0, 1)
    ax.set_ylabel("final test accuracy")
    ax.set_title("dumbbell, data split by clique (bars: mean over seeds, tick: min)", fontsize=9)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(HERE / "cliques.png")
    plt.close(fig)


def plot_curves(records: list[Record]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 3.6), dpi=100)
    for rule, runs in _by_rule(records).items():
        rounds = [h["round"] for h in runs[0]["history"]]
        mean = np.mean([[h["honest_accuracy_mean"] for h in r["history"]] for r in runs], axis=0)
        ax.plot(rounds, mean, marker="o", markersize=3, label=rule)
    ax.set_xlabel("round")
    ax.set_ylabel("honest mean test accuracy")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("dumbbell: global accuracy over rounds (mean over seeds)", fontsize=9)
    fig.tight_layout()
    fig.savefig(HERE / "curves.png")
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
