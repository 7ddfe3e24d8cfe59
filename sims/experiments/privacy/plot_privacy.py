"""Experiment (privacy): ``privacy.png`` and ``tradeoff.md`` from ``results.csv``.

``results.csv`` is written by ``p2pfl sweep`` in ``run.sh``. One panel per attack; per
rule, the final honest mean accuracy (mean over seeds) against the run's epsilon (the
largest honest node's, at delta 0.01), one point per DP-SGD noise multiplier, and the
same rule without DP as a dashed horizontal line. ``tradeoff.md`` holds the numbers:
one row per rule and attack, one column per privacy level, mean (worst node) accuracy.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import matplotlib.ticker

HERE = Path(__file__).resolve().parent
ATTACK_LABELS = {"0/sign_flip": "no attack", "3/sign_flip": "3 sign flippers", "3/alie": "3 ALIE"}


def level(row: dict[str, str]) -> str:
    """The privacy level of a run: ``none`` or its noise multiplier."""
    if row["privacy.mechanism"] == "none":
        return "none"
    return row["privacy.noise_multiplier"]


def attack(row: dict[str, str]) -> str:
    return ATTACK_LABELS[f"{row['byzantine.count']}/{row['byzantine.attack']}"]


def mean(values: list[float]) -> float:
    return sum(values) / len(values)


def main() -> None:
    with (HERE / "results.csv").open() as fh:
        rows = [r for r in csv.DictReader(fh) if r["status"] == "ok"]
    rules = list(dict.fromkeys(r["aggregator.name"] for r in rows))
    attacks = list(dict.fromkeys(attack(r) for r in rows))
    levels = list(dict.fromkeys(level(r) for r in rows))
    noisy = sorted((lv for lv in levels if lv != "none"), key=float)
    acc: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    worst: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    eps: dict[str, list[float]] = defaultdict(list)
    for r in rows:
        key = (r["aggregator.name"], attack(r), level(r))
        acc[key].append(float(r["honest_accuracy_mean"]))
        worst[key].append(float(r["honest_accuracy_min"]))
        if r["epsilon"]:
            eps[level(r)].append(float(r["epsilon"]))

    fig, axes = plt.subplots(
        1, len(attacks), figsize=(4.4 * len(attacks), 3.6), dpi=100, sharey=True
    )
    for ax, att in zip(axes, attacks, strict=True):
        for rule in rules:
            xs = [mean(eps[lv]) for lv in noisy]
            ys = [mean(acc[(rule, att, lv)]) for lv in noisy]
            line = ax.plot(xs, ys, marker="o", markersize=4, label=rule)
            ax.axhline(mean(acc[(rule, att, "none")]), color=line[0].get_color(), ls="--", lw=0.8)
        ax.set_xscale("log")
        ticks = sorted(mean(eps[lv]) for lv in noisy)
        ax.set_xticks(ticks, [f"{t:.1f}" for t in ticks])
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_title(att)
        ax.set_xlabel("epsilon (delta = 0.01), log scale")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("final honest accuracy (mean)")
    axes[0].legend(fontsize=8, title="rule (dashed: no DP)", title_fontsize=8)
    fig.tight_layout()
    fig.savefig(HERE / "privacy.png")

    header = ["rule", "attack", "no DP", *(f"sigma {lv}, eps {mean(eps[lv]):.1f}" for lv in noisy)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for att in attacks:
        for rule in rules:
            cells = [
                f"{mean(acc[(rule, att, lv)]):.3f} ({min(worst[(rule, att, lv)]):.3f})"
                for lv in ["none", *noisy]
            ]
            lines.append("| " + " | ".join([rule, att, *cells]) + " |")
    note = (
        "Final honest accuracy, mean over nodes and seeds (worst honest node over seeds in "
        "parentheses); epsilon is the largest honest node's, at delta = 0.01.\n\n"
    )
    (HERE / "tradeoff.md").write_text(note + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
