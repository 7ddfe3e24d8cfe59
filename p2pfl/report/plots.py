"""PNG plots of a run (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


def plot_accuracy(history: Sequence[Mapping[str, Any]], path: str | Path, title: str = "") -> None:
    """Honest mean test accuracy per evaluation round, with the min-max band over honest nodes."""
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
