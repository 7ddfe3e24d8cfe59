"""Experiment (b): the dumbbell. ``python run.py`` regenerates ``topologies/``,
``results.csv``, ``results.md``, ``cliques.md``, ``cliques.png``, ``curves.png`` and
``topology.png`` in this folder (finished runs are kept in ``cells/`` and skipped).

1. For each seed, the scenario's partition (one digit class per node) is computed with
   the plain dumbbell, and a dumbbell topology file is written whose first clique holds
   the nodes of classes 0-4 and whose second clique those of classes 5-9, joined by one
   edge. The partition depends only on the data, ``n`` and the seed, not on the graph,
   which the script checks by rebuilding the experiment from the file.
2. ``p2pfl.sweep`` runs, for each seed (two at a time): the rules (``--zip`` pairs each
   with its parameters) x two data splits (by clique, and IID on the same graph) x two
   optimizer set-ups (the paper's: 900 rounds of one SGD step at lr 0.01 with momentum
   0.9; and the earlier one: 60 rounds of 5 steps at lr 0.3), plus a reference for each
   split and set-up: gossip on a complete graph (what perfect mixing reaches).
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
from p2pfl.sweep import parse_grid, plan_sweep, run_sweep, write_outputs, zip_groups
from p2pfl.sweep.heatmap import label
from p2pfl.topology import Topology, draw, load_topology, save_topology

HERE = Path(__file__).resolve().parent
SCENARIO = HERE / "scenario.toml"
SEEDS = (0, 1, 2)
LOW = 5  # classes 0..4 go to clique A
RULE, PARAMS = "aggregator.name", "aggregator.params"
DATA, DATA_PARAMS = "data.partition", "data.partition_params"
SETUP = "training.lr"  # the set-up's defining key; the others move with it (--zip)
# Rules and their parameters: the paper's (He et al. 2022, Fig. 4: gossip, TM, RFA and
# ClippedGossip with tau = 1), and ClippedGossip with the released code's adaptive radius.
ZIPS = [
    f"rule:{RULE}=gossip,trimmed_mean,geometric_median,clipped_gossip,clipped_gossip",
    f'rule:{PARAMS}={{}},{{}},{{}},{{tau=1.0}},{{radius="adaptive"}}',
    f"data:{DATA}=shards,iid",
    f"data:{DATA_PARAMS}={{shards_per_node=1}},{{}}",
    f"{SETUP}=0.01,0.3",
    "training.momentum=0.9,0.0",
    "training.local_steps=1,5",
    "run.rounds=900,60",
    "run.eval_every=50,5",
]
SETUPS = {"0.01": "paper: 900 rounds x 1 step, lr 0.01, momentum 0.9",
          "0.3": "earlier: 60 rounds x 5 steps, lr 0.3"}  # fmt: skip
SPLITS = {"shards": "by clique (one class per node)", "iid": "IID"}
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
    axes = parse_grid([], ZIPS)
    groups = zip_groups(axes)
    reference = parse_grid([], ZIPS[2:])  # every split and set-up, gossip only
    records = []
    for seed, (path, low, high) in files.items():
        overrides = [f"run.seed={seed}", f"topology.file={path.relative_to(HERE)}"]
        planned = plan_sweep(SCENARIO, axes, overrides)
        complete = [f"run.seed={seed}", "topology.kind=complete", f"{RULE}=gossip"]
        refs = plan_sweep(SCENARIO, reference, complete)
        done = run_sweep([*planned, *refs], HERE, jobs=2)
        for rec in done.records:
            if rec["status"] != "ok":
                raise SystemExit(f"{rec['values']} seed {seed} failed: {rec['error']}")
            rec["values"].setdefault(RULE, "gossip")
            rec["values"].setdefault(PARAMS, "{}")
            acc = rec["final_accuracy"]
            rec["clique_low"] = float(np.mean([acc[i] for i in low]))
            rec["clique_high"] = float(np.mean([acc[i] for i in high]))
        for rec in done.records[len(planned) :]:
            rec["values"][RULE] = REFERENCE
        records += done.records
    keys = [a.key for a in axes]
    spec = {
        "scenario": "scenario.toml",
        "zip": ZIPS,
        "reference": "aggregator.name=gossip, topology.kind=complete, every split and set-up",
        "seeds": list(SEEDS),
    }
    write_outputs(HERE, records, keys, spec, axes=None, title="dumbbell", groups=groups)
    (HERE / "heatmap.png").unlink(missing_ok=True)  # the tables and bars say it all
    write_clique_table(records, groups)
    plot_cliques(records, groups)
    plot_curves(records, groups)
    draw(load_topology(files[0][0]), HERE / "topology.png")
    print((HERE / "cliques.md").read_text())
    return 0


def _rule(record: Record, groups: list[list[str]]) -> str:
    return label(record, RULE, groups)


def _by(records: list[Record], setup: str, split: str) -> list[Record]:
    return [r for r in records if r["values"][SETUP] == setup and r["values"][DATA] == split]


def _by_rule(records: list[Record], groups: list[list[str]]) -> dict[str, list[Record]]:
    out: dict[str, list[Record]] = {}
    for r in records:
        out.setdefault(_rule(r, groups), []).append(r)
    return out


def _stat(runs: list[Record], key: str) -> str:
    xs = [float(r[key]) for r in runs]
    return f"{np.mean(xs):.3f} ± {np.std(xs, ddof=1):.3f}" if len(xs) > 1 else f"{xs[0]:.3f}"


def write_clique_table(records: list[Record], groups: list[list[str]]) -> None:
    text = (
        "# Dumbbell: final test accuracy per clique and globally\n\n"
        f"Mean ± standard deviation over seeds {', '.join(map(str, SEEDS))}; every node is "
        "tested on all ten classes, so a clique that learnt only its own five classes scores "
        "about 0.5. 'worst node': the lowest final accuracy of any node in any seed.\n"
    )
    for setup, setup_text in SETUPS.items():
        for split, split_text in SPLITS.items():
            lines = [
                "| rule | clique 0-4 acc | clique 5-9 acc | global acc (all honest) "
                "| worst node | consensus dist |",
                "| --- | --- | --- | --- | --- | --- |",
            ]
            for rule, runs in _by_rule(_by(records, setup, split), groups).items():
                worst = min(float(r["honest_accuracy_min"]) for r in runs)
                lines.append(
                    f"| {rule} | {_stat(runs, 'clique_low')} | {_stat(runs, 'clique_high')} "
                    f"| {_stat(runs, 'honest_accuracy_mean')} | {worst:.3f} "
                    f"| {np.mean([r['consensus_distance'] for r in runs]):.3g} |"
                )
            text += f"\n## {setup_text}; data {split_text}\n\n" + "\n".join(lines) + "\n"
    (HERE / "cliques.md").write_text(text)


def plot_cliques(records: list[Record], groups: list[list[str]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(12, 7), dpi=100, sharey=True)
    for row, (setup, setup_text) in enumerate(SETUPS.items()):
        for col, (split, split_text) in enumerate(SPLITS.items()):
            ax = axes[row][col]
            rules = _by_rule(_by(records, setup, split), groups)
            width = 0.27
            for k, (key, name) in enumerate(
                [
                    ("clique_low", "clique 0-4"),
                    ("clique_high", "clique 5-9"),
                    ("honest_accuracy_mean", "global"),
                ]
            ):
                means = [np.mean([r[key] for r in runs]) for runs in rules.values()]
                lows = [np.min([r[key] for r in runs]) for runs in rules.values()]
                x = np.arange(len(rules)) + (k - 1) * width
                ax.bar(x, means, width, label=name)
                ax.scatter(x, lows, marker="_", color="black", zorder=3)
            names = [_short(r) for r in rules]
            ax.set_xticks(range(len(rules)), names, fontsize=7)
            ax.set_ylim(0, 1)
            ax.grid(axis="y", alpha=0.3)
            ax.set_title(f"{setup_text}; {split_text}", fontsize=8)
    axes[0][0].set_ylabel("final test accuracy")
    axes[1][0].set_ylabel("final test accuracy")
    axes[0][0].legend(loc="lower left", fontsize=7)
    fig.suptitle("dumbbell (bars: mean over seeds, tick: min)", fontsize=9)
    fig.tight_layout()
    fig.savefig(HERE / "cliques.png")
    plt.close(fig)


def _short(rule: str) -> str:
    """A rule's label on two lines, short enough for a bar chart's ticks."""
    if rule == REFERENCE:
        return "gossip, complete\ngraph (ref.)"
    return rule.replace(" {", "\n{").replace("_m", "\nm").replace('radius="adaptive"', "adaptive")


def plot_curves(records: list[Record], groups: list[list[str]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 3.6), dpi=100)
    for rule, runs in _by_rule(_by(records, "0.01", "shards"), groups).items():
        rounds = [h["round"] for h in runs[0]["history"]]
        mean = np.mean([[h["honest_accuracy_mean"] for h in r["history"]] for r in runs], axis=0)
        ax.plot(rounds, mean, marker="o", markersize=3, label=rule)
    ax.set_xlabel("round")
    ax.set_ylabel("honest mean test accuracy")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title("dumbbell, paper's optimizer, data by clique (mean over seeds)", fontsize=9)
    fig.tight_layout()
    fig.savefig(HERE / "curves.png")
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
