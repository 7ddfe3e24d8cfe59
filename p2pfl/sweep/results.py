"""Sweep tables: ``results.csv`` (one row per run) and ``results.md`` (one row per cell).

A *run* is one cell with one seed; a *cell* here is one combination of the swept
values, summarized over its seeds by :func:`summarize`:

* ``final acc``: mean over seeds of the final honest mean accuracy (± its standard
  deviation over seeds, when there are several);
* ``worst honest acc``: the minimum over seeds of the worst honest node's final
  accuracy, the number the heatmaps show;
* ``best acc``: mean over seeds of the best honest mean accuracy over all rounds;
* ``consensus dist``, ``ASR`` (backdoor attack success rate), ``wall s``: means over seeds;
* ``diverged`` (shown when a run had any): mean over seeds of the number of honest nodes
  whose parameters diverged (they count at chance in the accuracies).
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

METRICS = (
    "honest_accuracy_mean",
    "honest_accuracy_min",
    "best_honest_accuracy_mean",
    "consensus_distance",
    "attack_success_rate",
)
RUN_COLUMNS = (
    "seed",
    "status",
    *METRICS,
    "epsilon",
    "nodes",
    "byzantine",
    "diverged",
    "rounds",
    "bytes_sent_per_node_per_round",
    "wall_seconds",
    "error",
    "cell",
)

Record = Mapping[str, Any]


@dataclass(frozen=True)
class CellSummary:
    """One combination of swept values, over its seeds (see the module docstring)."""

    values: tuple[str, ...]
    runs: int
    ok: int
    acc_mean: float | None
    acc_std: float | None
    worst: float | None
    best: float | None
    consensus: float | None
    asr: float | None
    wall: float
    errors: list[str] = field(default_factory=list)
    diverged: float | None = None


def run_rows(records: Sequence[Record], keys: Sequence[str]) -> list[dict[str, Any]]:
    """The ``results.csv`` rows: every swept key, then :data:`RUN_COLUMNS`."""
    rows = []
    for r in records:
        row: dict[str, Any] = {k: r["values"].get(k, "") for k in keys}
        for col in RUN_COLUMNS:
            value = r.get(col)
            if isinstance(value, float):
                value = f"{value:.6g}" if math.isfinite(value) else ""
            row[col] = "" if value is None else value
        rows.append(row)
    return rows


def write_csv(path: str | Path, records: Sequence[Record], keys: Sequence[str]) -> None:
    """Write ``results.csv`` atomically."""
    p = Path(path)
    tmp = p.with_name(p.name + ".tmp")
    with tmp.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=[*keys, *RUN_COLUMNS])
        writer.writeheader()
        writer.writerows(run_rows(records, keys))
    os.replace(tmp, p)


def _mean(xs: Sequence[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None


def _values(records: Sequence[Record], key: str) -> list[float]:
    out = []
    for r in records:
        v = r.get(key)
        if isinstance(v, (int, float)) and math.isfinite(v):
            out.append(float(v))
    return out


def summarize(records: Sequence[Record], keys: Sequence[str]) -> list[CellSummary]:
    """Group runs by their swept values (first-seen order) and summarize over seeds."""
    groups: dict[tuple[str, ...], list[Record]] = {}
    for r in records:
        groups.setdefault(tuple(str(r["values"].get(k, "")) for k in keys), []).append(r)
    out = []
    for values, runs in groups.items():
        ok = [r for r in runs if r.get("status") == "ok"]
        accs = _values(ok, "honest_accuracy_mean")
        mean = _mean(accs)
        std = (
            math.sqrt(sum((a - mean) ** 2 for a in accs) / (len(accs) - 1))
            if mean is not None and len(accs) > 1
            else None
        )
        worst = _values(ok, "honest_accuracy_min")
        errors = sorted({str(r.get("error")) for r in runs if r.get("status") != "ok"})
        out.append(
            CellSummary(
                values=values,
                runs=len(runs),
                ok=len(ok),
                acc_mean=mean,
                acc_std=std,
                worst=min(worst) if worst else None,
                best=_mean(_values(ok, "best_honest_accuracy_mean")),
                consensus=_mean(_values(ok, "consensus_distance")),
                asr=_mean(_values(ok, "attack_success_rate")),
                wall=sum(_values(runs, "wall_seconds")) / max(1, len(runs)),
                errors=errors,
                diverged=_mean(_values(ok, "diverged")),
            )
        )
    return out


def _fmt(x: float | None, spec: str = ".3f") -> str:
    return "–" if x is None else format(x, spec)


def _cell_text(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown_table(records: Sequence[Record], keys: Sequence[str]) -> str:
    """``results.md``: one row per combination of swept values, summarized over seeds."""
    cells = summarize(records, keys)
    with_asr = any(c.asr is not None for c in cells)
    with_div = any(c.diverged for c in cells)
    head = [*keys, "seeds", "final acc", "worst honest acc", "best acc", "consensus dist"]
    head += ["ASR"] if with_asr else []
    head += ["diverged"] if with_div else []
    head += ["wall s", "status"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(" --- " for _ in head) + "|"]
    for c in cells:
        acc = _fmt(c.acc_mean)
        if c.acc_std is not None:
            acc += f" ± {c.acc_std:.3f}"
        status = (
            "ok" if c.ok == c.runs else f"{c.runs - c.ok}/{c.runs} failed: " + "; ".join(c.errors)
        )
        row = [*c.values, str(c.runs), acc, _fmt(c.worst), _fmt(c.best), _fmt(c.consensus, ".3g")]
        row += [_fmt(c.asr)] if with_asr else []
        row += [_fmt(c.diverged, ".1f")] if with_div else []
        row += [f"{c.wall:.1f}", status]
        lines.append("| " + " | ".join(_cell_text(v) for v in row) + " |")
    return "\n".join(lines) + "\n"


def write_markdown(
    path: str | Path, records: Sequence[Record], keys: Sequence[str], title: str = ""
) -> None:
    """Write ``results.md`` atomically (an optional ``# title`` line first)."""
    p = Path(path)
    text = (f"# {title}\n\n" if title else "") + markdown_table(records, keys)
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, p)
