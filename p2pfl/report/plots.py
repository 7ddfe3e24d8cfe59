"""PNG plots of a run (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


def plot_accuracy(history: Sequence[Mapping[str, Any]], path: str | Path, title: str = "") -> None:
    """Honest mean test accuracy per evaluation round, with the min-max band over honest nodes
    and the 10th percentile (the accuracy 90% of the honest nodes reach) as a dashed line.

    When the history carries them (``evaluation.local_test``), the mean and p10 of the
    local accuracy are drawn too, and the personalized mean as a final point."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rounds = [h["round"] for h in history]
    mean = [h["honest_accuracy_mean"] for h in history]
    lo = [h["honest_accuracy_min"] for h in history]
    hi = [h["honest_accuracy_max"] for h in history]
    fig, ax = plt.subplots(figsize=(6, 4), dpi=110)
    ax.fill_between(rounds, lo, hi, alpha=0.25, label="honest min-max")
    ax.plot(rounds, mean, marker="o", markersize=3, label="honest mean")
    if all(h.get("honest_accuracy_p10") is not None for h in history):
        p10 = [float(h["honest_accuracy_p10"]) for h in history]
        ax.plot(rounds, p10, linestyle="--", color="C0", label="honest p10")
    local = [(h["round"], h) for h in history if h.get("local_accuracy_mean") is not None]
    if local:
        xs = [r for r, _ in local]
        ax.plot(xs, [h["local_accuracy_mean"] for _, h in local], color="C2", label="local mean")
        ax.plot(
            xs,
            [h["local_accuracy_p10"] for _, h in local],
            linestyle="--",
            color="C2",
            label="local p10",
        )
    pers = [h for h in history if h.get("personalized_accuracy_mean") is not None]
    if pers:
        ax.plot(
            [h["round"] for h in pers],
            [h["personalized_accuracy_mean"] for h in pers],
            marker="*",
            markersize=10,
            linestyle="none",
            color="C3",
            label="personalized mean",
        )
    ax.set_xlabel("round")
    ax.set_ylabel("test accuracy")
    ax.set_ylim(0.0, 1.0)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    if title:
        ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
