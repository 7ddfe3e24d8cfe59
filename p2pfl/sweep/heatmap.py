"""Heatmaps of a sweep: rows x columns of swept values, cell = worst honest accuracy.

The cell value is the minimum, over seeds, of the final accuracy of the worst honest
node (``honest_accuracy_min``): a rule "survives" an attack in a cell only if every
honest node did, in every seed. Rows and columns default to ``aggregator.name`` x
``byzantine.attack`` when both are swept (:func:`choose_axes`). Each combination of
the other swept keys gets its own panel in the same figure; beyond
:data:`MAX_PANELS` combinations, the other keys are folded in with the minimum too
(and the title says so). Keys swept together by a ``--zip`` group move as one: a row or
column label shows the whole group's values, and the group makes no panels of its own
beyond its first key. Cells whose runs all failed are grey and marked ``fail``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from p2pfl.errors import ConfigError

RULE = "aggregator.name"
ATTACK = "byzantine.attack"
MAX_PANELS = 9
ALL = "(all)"

Record = Mapping[str, Any]


def choose_axes(keys: Sequence[str]) -> tuple[str, str | None] | None:
    """(row key, column key or None) for the swept ``keys``; None when nothing is swept."""
    if not keys:
        return None
    if RULE in keys and ATTACK in keys:
        return RULE, ATTACK
    for preferred in (RULE, ATTACK):
        if preferred in keys:
            others = [k for k in keys if k != preferred]
            return (preferred, others[0]) if others else (preferred, None)
    return (keys[0], keys[1]) if len(keys) > 1 else (keys[0], None)


def parse_axes(text: str, keys: Sequence[str]) -> tuple[str, str | None]:
    """``--heatmap ROW,COL`` (or just ``ROW``): both must be swept keys."""
    parts = [p.strip() for p in text.split(",")]
    if not 1 <= len(parts) <= 2 or not all(parts):
        raise ConfigError(f"--heatmap {text!r}: expected ROW_KEY,COLUMN_KEY")
    for p in parts:
        if p not in keys:
            raise ConfigError(
                f"--heatmap {text!r}: {p} is not a swept key; swept: {', '.join(keys)}"
            )
    if len(parts) == 2 and parts[0] == parts[1]:
        raise ConfigError(f"--heatmap {text!r}: rows and columns need two different keys")
    return parts[0], parts[1] if len(parts) == 2 else None


Groups = Sequence[Sequence[str]]
EMPTY = ("", "{}")


def label(record: Record, key: str, groups: Groups = ()) -> str:
    """``record``'s value of ``key``; for a key of a ``--zip`` group, the group's values
    together (``clipped_gossip {tau=0.1}``; empty parameter tables left out), so that
    variants of one name get rows of their own."""
    values = record["values"]
    for group in groups:
        if key in group:
            parts = [str(values[key])] + [
                str(values[k]) for k in group if k != key and str(values[k]) not in EMPTY
            ]
            return " ".join(parts)
    return str(values[key])


def _ordered(records: Sequence[Record], key: str | None, groups: Groups = ()) -> list[str]:
    if key is None:
        return [ALL]
    seen: dict[str, None] = {}
    for r in records:
        seen.setdefault(label(r, key, groups), None)
    return list(seen)


def worst_matrix(
    records: Sequence[Record], row: str, col: str | None, groups: Groups = ()
) -> tuple[list[str], list[str], list[list[float | None]], list[list[bool]]]:
    """Row labels, column labels, min honest accuracy per cell (None: no run), all-failed flags."""
    rows, cols = _ordered(records, row, groups), _ordered(records, col, groups)
    value: list[list[float | None]] = [[None] * len(cols) for _ in rows]
    seen = [[False] * len(cols) for _ in rows]
    for r in records:
        i = rows.index(label(r, row, groups))
        j = cols.index(label(r, col, groups)) if col is not None else 0
        seen[i][j] = True
        acc = r.get("honest_accuracy_min")
        if r.get("status") == "ok" and isinstance(acc, (int, float)) and math.isfinite(acc):
            old = value[i][j]
            value[i][j] = float(acc) if old is None else min(old, float(acc))
    failed = [
        [seen[i][j] and value[i][j] is None for j in range(len(cols))] for i in range(len(rows))
    ]
    return rows, cols, value, failed


def panels(
    records: Sequence[Record],
    keys: Sequence[str],
    row: str,
    col: str | None,
    groups: Groups = (),
) -> list[tuple[str, list[Record]]]:
    """(title, records) per combination of the other swept keys, or one folded panel.

    The keys of a ``--zip`` group vary together: only the first of them makes panels,
    and none when the rows or columns are one of them.
    """
    others = [k for k in keys if k not in (row, col)]
    for group in groups:
        tied = row in group or col in group
        others = [k for k in others if k not in group or (not tied and k == group[0])]
    if not others:
        return [("", list(records))]
    combos = list(itertools.product(*[_ordered(records, k, groups) for k in others]))
    if len(combos) > MAX_PANELS:
        return [(f"min over {', '.join(others)}", list(records))]
    out = []
    for combo in combos:
        chosen = [
            r
            for r in records
            if all(label(r, k, groups) == v for k, v in zip(others, combo, strict=True))
        ]
        if chosen:
            out.append((", ".join(f"{k}={v}" for k, v in zip(others, combo, strict=True)), chosen))
    return out


def plot_heatmap(
    records: Sequence[Record],
    keys: Sequence[str],
    path: str | Path,
    axes: tuple[str, str | None] | None = None,
    title: str = "",
    groups: Groups = (),
) -> bool:
    """Draw the heatmap PNG; False (nothing written) when no key is swept or no run exists."""
    chosen = axes or choose_axes(keys)
    if chosen is None or not records:
        return False
    row, col = chosen
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    parts = panels(records, keys, row, col, groups)
    rows0, cols0, _, _ = worst_matrix(records, row, col, groups)
    ncols = 2 if len(parts) == 4 else min(3, len(parts))  # 4 panels: a 2 x 2 square
    nrows = math.ceil(len(parts) / ncols)
    w = 1.2 + 0.85 * len(cols0)
    h = 0.9 + 0.42 * len(rows0)
    fig, grid = plt.subplots(
        nrows,
        ncols,
        figsize=(w * ncols + 1.5, h * nrows + 0.6),
        dpi=100,
        squeeze=False,
        layout="constrained",
    )
    image = None
    for k, (sub, recs) in enumerate(parts):
        ax = grid[k // ncols][k % ncols]
        rows, cols, value, failed = worst_matrix(recs, row, col, groups)
        data = np.array([[np.nan if v is None else v for v in line] for line in value], dtype=float)
        cmap = matplotlib.colormaps["viridis"].with_extremes(bad="#d0d0d0")
        image = ax.imshow(np.ma.masked_invalid(data), cmap=cmap, vmin=0.0, vmax=1.0, aspect="auto")
        for i in range(len(rows)):
            for j in range(len(cols)):
                v = value[i][j]
                text = "fail" if failed[i][j] else ("" if v is None else f"{v:.2f}")
                colour = "white" if v is not None and v < 0.6 else "black"
                ax.text(j, i, text, ha="center", va="center", fontsize=8, color=colour)
        ax.set_xticks(range(len(cols)), cols, rotation=30, ha="right", fontsize=8)
        ax.set_yticks(range(len(rows)), rows, fontsize=8)
        ax.set_xlabel(col or "", fontsize=8)
        ax.set_ylabel(row, fontsize=8)
        if sub:
            ax.set_title(sub, fontsize=8)
    for k in range(len(parts), nrows * ncols):
        grid[k // ncols][k % ncols].axis("off")
    if image is not None:
        fig.colorbar(image, ax=grid.ravel().tolist(), shrink=0.8, label="worst honest accuracy")
    fig.suptitle(title or "worst honest accuracy (worst node, worst seed)", fontsize=10)
    fig.savefig(path)
    plt.close(fig)
    return True
