"""Accuracy against bytes sent, for every compression operator and scheme, with and without attacks.

The default scenario (digits, 16 nodes on a random 4-regular graph, 50 rounds; ``p2pfl sim``
with no argument) under each (operator, scheme) of ``CONFIGS``, each rule of ``RULES``
(coordinate-wise median; ClippedGossip, adaptive radius) and each attack of ``ATTACKS``
(none: no Byzantine node; sign flip and ALIE: the default 3 Byzantine nodes). Attackers act on
what is sent: they compress their crafted vectors (for CHOCO, the difference to the copy each
target holds of them).

Writes ``results.csv``, ``results.md`` and ``accuracy_vs_bytes.png`` (honest accuracy against
the cumulative bytes each honest node sent, one panel per rule and attack) next to this file.

    python sims/experiments/compression/run.py            # about 5 min on 2 cores
"""

from __future__ import annotations

import csv
import sys
import time
from multiprocessing import Pool
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent

#: (label, scheme label, overrides)
CONFIGS: list[tuple[str, str, list[str]]] = [
    ("none", "direct", []),
    ("fp16", "direct", ["compression.name=fp16"]),
    ("bf16", "direct", ["compression.name=bf16"]),
    ("int8", "direct", ["compression.name=int8"]),
    ("qsgd", "direct", ["compression.name=qsgd"]),
    ("top_k 1%", "direct+EF", ["compression.name=top_k", "compression.error_feedback=true"]),
    ("random_k 1%", "direct+EF", ["compression.name=random_k", "compression.error_feedback=true"]),
    ("int8", "choco", ["compression.name=int8", "compression.scheme=choco"]),
    ("qsgd", "choco", ["compression.name=qsgd", "compression.scheme=choco"]),
    ("top_k 1%", "choco", ["compression.name=top_k", "compression.scheme=choco"]),
    ("random_k 1%", "choco", ["compression.name=random_k", "compression.scheme=choco"]),
]
RULES = {
    "median": ["aggregator.name=median"],
    "clipped_gossip": ["aggregator.name=clipped_gossip"],
}
ATTACKS = {
    "none": ["byzantine.count=0"],
    "sign_flip": ["byzantine.attack=sign_flip"],
    "alie": ["byzantine.attack=alie"],
}


def run_cell(cell: tuple[str, str, list[str], str, str]) -> dict[str, Any]:
    import torch

    from p2pfl.config import load_scenario
    from p2pfl.sim import simulate
    from p2pfl.sim.outputs import sim_summary

    torch.set_num_threads(1)
    label, scheme, overrides, rule, attack = cell
    start = time.perf_counter()
    result = simulate(load_scenario(None, [*overrides, *RULES[rule], *ATTACKS[attack]]))
    summary = sim_summary(result)
    return {
        "operator": label,
        "scheme": scheme,
        "rule": rule,
        "attack": attack,
        "gamma": result.experiment.compression.gamma if "choco" in scheme else None,
        "honest_accuracy_mean": summary["honest_accuracy_mean"],
        "honest_accuracy_min": summary["honest_accuracy_min"],
        "bytes_sent_per_node_per_round": summary["bytes_sent_per_node_per_round"],
        "curve": [(h["round"], h["honest_accuracy_mean"]) for h in summary["history"]],
        "seconds": time.perf_counter() - start,
    }


def write_outputs(rows: list[dict[str, Any]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    base = {
        (r["rule"], r["attack"]): r["bytes_sent_per_node_per_round"]
        for r in rows
        if r["operator"] == "none"
    }
    for r in rows:
        r["bytes_vs_none"] = r["bytes_sent_per_node_per_round"] / base[(r["rule"], r["attack"])]
    fields = [
        "operator",
        "scheme",
        "rule",
        "attack",
        "gamma",
        "honest_accuracy_mean",
        "honest_accuracy_min",
        "bytes_sent_per_node_per_round",
        "bytes_vs_none",
        "seconds",
    ]
    with (HERE / "results.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=fields, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    lines = [
        "| operator | scheme | bytes/node/round | vs none | "
        + " | ".join(f"{rule} {attack}" for rule in RULES for attack in ATTACKS)
        + " |",
        "|---|---|---:|---:|" + "---:|" * (len(RULES) * len(ATTACKS)),
    ]
    for label, scheme, _ in CONFIGS:
        mine = {
            (r["rule"], r["attack"]): r
            for r in rows
            if (r["operator"], r["scheme"]) == (label, scheme)
        }
        first = mine[("median", "none")]
        accs = " | ".join(
            f"{mine[(rule, attack)]['honest_accuracy_mean']:.3f}"
            for rule in RULES
            for attack in ATTACKS
        )
        lines.append(
            f"| {label} | {scheme} | {first['bytes_sent_per_node_per_round']:,.0f} | "
            f"{first['bytes_vs_none']:.1%} | {accs} |"
        )
    (HERE / "results.md").write_text(
        "Final honest accuracy (mean over honest nodes, round 50) by rule and attack; bytes each "
        "honest node sent per round (header + payload, once per neighbour).\n\n"
        + "\n".join(lines)
        + "\n"
    )
    fig, axes = plt.subplots(len(RULES), len(ATTACKS), figsize=(15, 8), sharex=True, sharey=True)
    for i, rule in enumerate(RULES):
        for j, attack in enumerate(ATTACKS):
            ax = axes[i][j]
            for r in rows:
                if (r["rule"], r["attack"]) != (rule, attack):
                    continue
                per = r["bytes_sent_per_node_per_round"]
                xs = [rnd * per for rnd, _ in r["curve"]]
                ys = [acc for _, acc in r["curve"]]
                style = "-" if r["scheme"] == "choco" else "--"
                ax.plot(xs, ys, style, label=f"{r['operator']} {r['scheme']}")
            ax.set_xscale("log")
            ax.set_title(f"{rule}, attack {attack}")
            ax.set_ylim(0, 1)
            ax.grid(alpha=0.3)
            if i == len(RULES) - 1:
                ax.set_xlabel("cumulative bytes sent per honest node")
            if j == 0:
                ax.set_ylabel("honest accuracy (mean)")
    axes[0][-1].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(HERE / "accuracy_vs_bytes.png", dpi=110)


def main() -> int:
    cells = [
        (label, scheme, overrides, rule, attack)
        for label, scheme, overrides in CONFIGS
        for rule in RULES
        for attack in ATTACKS
    ]
    start = time.perf_counter()
    with Pool(2) as pool:
        rows = []
        for k, row in enumerate(pool.imap(run_cell, cells), 1):
            rows.append(row)
            print(
                f"[{k}/{len(cells)}] {row['operator']} {row['scheme']} {row['rule']} "
                f"{row['attack']}: acc {row['honest_accuracy_mean']:.3f}, "
                f"{row['bytes_sent_per_node_per_round']:,.0f} B/node/round",
                flush=True,
            )
    write_outputs(rows)
    print(f"{len(cells)} runs in {time.perf_counter() - start:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
