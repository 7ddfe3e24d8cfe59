"""What a partition looks like: per-node sizes, class histograms and label skew.

The heterogeneity figure is the mean total-variation distance between each node's
label distribution ``q_i`` and the label distribution ``p`` of the whole training set,

    TV_i = 1/2 * sum_c |q_i(c) - p(c)|,      heterogeneity = mean_i TV_i,

0 for a perfectly stratified split and close to 1 when every node holds a single
class of a many-class problem.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from rich.table import Table

from p2pfl.errors import DataError


def class_histograms(
    labels: np.ndarray, parts: Sequence[np.ndarray], num_classes: int
) -> np.ndarray:
    """``(n_nodes, num_classes)`` int64: how many examples of each class each node holds."""
    lab = np.asarray(labels, dtype=np.int64)
    if lab.size and (int(lab.min()) < 0 or int(lab.max()) >= num_classes):
        raise DataError(f"labels must lie in [0, {num_classes})")
    sizes = np.array([len(p) for p in parts], dtype=np.int64)
    if not sizes.sum():
        return np.zeros((len(parts), num_classes), dtype=np.int64)
    flat = np.concatenate([np.asarray(p, dtype=np.int64) for p in parts])
    if int(flat.min()) < 0 or int(flat.max()) >= lab.size:
        raise DataError(f"partition index out of range for {lab.size} labels")
    owner = np.repeat(np.arange(len(parts)), sizes)
    cells = np.bincount(owner * num_classes + lab[flat], minlength=len(parts) * num_classes)
    return cells.reshape(len(parts), num_classes)


def total_variation(hist: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """``(n_nodes,)`` TV distance of each node's label distribution to the global one."""
    glob = np.bincount(np.asarray(labels, dtype=np.int64), minlength=num_classes).astype(float)
    glob /= max(glob.sum(), 1.0)
    sizes = hist.sum(axis=1, keepdims=True).astype(float)
    local = hist / np.maximum(sizes, 1.0)
    return 0.5 * np.abs(local - glob).sum(axis=1)


def heterogeneity(labels: np.ndarray, parts: Sequence[np.ndarray], num_classes: int) -> float:
    """Mean total-variation distance between node and global label distributions."""
    hist = class_histograms(labels, parts, num_classes)
    return float(total_variation(hist, labels, num_classes).mean()) if len(parts) else 0.0


def partition_summary(
    labels: np.ndarray, parts: Sequence[np.ndarray], num_classes: int
) -> dict[str, Any]:
    """A JSON-ready description of a partition.

    Keys: ``nodes``, ``samples`` (examples in ``labels``), ``assigned`` (sum of part
    sizes; larger than ``samples`` when parts overlap), ``overlap`` (bool),
    ``sizes``, ``classes_per_node``, ``histograms`` (per node, per class),
    ``tv`` (per node), ``size_min``, ``size_max``, ``size_mean`` and
    ``heterogeneity`` (the mean of ``tv``).
    """
    hist = class_histograms(labels, parts, num_classes)
    tv = total_variation(hist, labels, num_classes)
    sizes = hist.sum(axis=1)
    distinct = np.unique(np.concatenate(parts)).size if len(parts) else 0
    return {
        "nodes": len(parts),
        "samples": int(np.asarray(labels).size),
        "assigned": int(sizes.sum()),
        "overlap": bool(int(sizes.sum()) != distinct),
        "sizes": sizes.tolist(),
        "classes_per_node": (hist > 0).sum(axis=1).tolist(),
        "histograms": hist.tolist(),
        "tv": tv.tolist(),
        "size_min": int(sizes.min()) if len(parts) else 0,
        "size_max": int(sizes.max()) if len(parts) else 0,
        "size_mean": float(sizes.mean()) if len(parts) else 0.0,
        "heterogeneity": float(tv.mean()) if len(parts) else 0.0,
    }


def summary_table(summary: dict[str, Any], max_rows: int = 20) -> Table:
    """A rich table of :func:`partition_summary`'s output: one row per node, at most ``max_rows``."""
    table = Table(
        title=f"Partition: {summary['nodes']} nodes, {summary['samples']} examples",
        caption=(
            f"sizes {summary['size_min']}..{summary['size_max']} "
            f"(mean {summary['size_mean']:.1f}); heterogeneity (mean TV) "
            f"{summary['heterogeneity']:.3f}" + ("; parts overlap" if summary["overlap"] else "")
        ),
    )
    table.add_column("node", justify="right")
    table.add_column("examples", justify="right")
    table.add_column("classes", justify="right")
    table.add_column("TV", justify="right")
    table.add_column("examples per class")
    shown = min(summary["nodes"], max_rows)
    for i in range(shown):
        table.add_row(
            str(i),
            str(summary["sizes"][i]),
            str(summary["classes_per_node"][i]),
            f"{summary['tv'][i]:.3f}",
            " ".join(str(c) for c in summary["histograms"][i]),
        )
    if summary["nodes"] > shown:
        table.add_row("...", "", "", "", f"({summary['nodes'] - shown} more nodes)")
    return table
