"""Experiment (d): ``fraction.png``, honest accuracy against the share of Byzantine nodes.

Reads ``results.csv`` (written by ``p2pfl sweep`` in ``run.sh``): one panel per attack
(columns) and Dirichlet alpha (rows), one line per rule; the line is the mean over seeds of the final honest mean accuracy,
the shaded band goes down to the worst honest node in the worst seed.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

HERE = Path(__file__).resolve().parent
ALPHA = "data.partition_params.alpha"


def plot_rule(ax: Any, rows: list[dict[str, str]], nodes: int, rule: str) -> None:
    """Mean honest accuracy per Byzantine count; the band reaches the worst node."""
    acc: dict[int, list[float]] = defaultdict(list)
    worst: dict[int, list[float]] = defaultdict(list)
    for r in rows:
        acc[int(r["byzantine.count"])].append(float(r["honest_accuracy_mean"]))
        worst[int(r["byzantine.count"])].append(float(r["honest_accuracy_min"]))
    counts = sorted(acc)
    pct = [100 * c / nodes for c in counts]
    mean = [sum(acc[c]) / len(acc[c]) for c in counts]
    line = ax.plot(pct, mean, marker="o", markersize=3, label=rule)
    ax.fill_between(
        pct, [min(worst[c]) for c in counts], mean, color=line[0].get_color(), alpha=0.1
    )


def main() -> None:
    with (HERE / "results.csv").open() as fh:
        rows = [r for r in csv.DictReader(fh) if r["status"] == "ok"]
    nodes = int(rows[0]["nodes"])
    attacks = list(dict.fromkeys(r["byzantine.attack"] for r in rows))
    alphas = list(dict.fromkeys(r[ALPHA] for r in rows))
    rules = list(dict.fromkeys(r["aggregator.name"] for r in rows))
    fig, grid = plt.subplots(
        len(alphas),
        len(attacks),
        figsize=(4.6 * len(attacks), 3.3 * len(alphas)),
        dpi=100,
        sharex=True,
        sharey=True,
        squeeze=False,
    )
    for row, alpha in enumerate(alphas):
        for col, attack in enumerate(attacks):
            ax = grid[row][col]
            chosen = [r for r in rows if r["byzantine.attack"] == attack and r[ALPHA] == alpha]
            for rule in rules:
                plot_rule(ax, [r for r in chosen if r["aggregator.name"] == rule], nodes, rule)
            ax.set_title(f"attack: {attack}, Dirichlet alpha = {alpha}", fontsize=9)
            ax.grid(alpha=0.3)
            ax.set_ylim(0, 1)
            if row == len(alphas) - 1:
                ax.set_xlabel("Byzantine nodes (%)")
            if col == 0:
                ax.set_ylabel("final honest test accuracy")
    grid[0][-1].legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    fig.savefig(HERE / "fraction.png")
    plt.close(fig)


if __name__ == "__main__":
    main()
