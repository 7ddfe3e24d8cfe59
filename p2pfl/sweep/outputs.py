"""Everything a sweep writes next to its ``cells/``: tables, heatmap, the sweep's own spec."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from p2pfl.sweep.heatmap import plot_heatmap
from p2pfl.sweep.results import write_csv, write_markdown

Record = Mapping[str, Any]


def write_outputs(
    out: str | Path,
    records: Sequence[Record],
    keys: Sequence[str],
    spec: Mapping[str, Any],
    axes: tuple[str, str | None] | None = None,
    title: str = "",
    groups: Sequence[Sequence[str]] = (),
) -> list[Path]:
    """Write ``sweep.json``, ``results.csv``, ``results.md`` and ``heatmap.png``; return the paths.

    ``groups``: the keys of each ``--zip`` group (:func:`p2pfl.sweep.zip_groups`).
    """
    from p2pfl.report import write_json

    out = Path(out)
    written = [out / "sweep.json", out / "results.csv", out / "results.md"]
    write_json(written[0], spec)
    write_csv(written[1], records, keys)
    write_markdown(written[2], records, keys, title=title)
    heatmap = out / "heatmap.png"
    if plot_heatmap(
        records,
        keys,
        heatmap,
        axes=axes,
        title=f"{title}: worst honest accuracy" if title else "",
        groups=groups,
    ):
        written.append(heatmap)
    return written
