"""Sweeps: run a scenario over a grid of values and seeds, resumably, in parallel.

``p2pfl sweep SCENARIO.toml --grid key=v1,v2 ... [--zip key=v1,v2 ...] --seeds K --jobs J
--out DIR``: :func:`parse_grid` reads the grid and the ``--zip`` pairs, :func:`plan_sweep`
checks every cell's scenario, :func:`run_sweep` runs the cells not yet done
(``DIR/cells/<id>.json``), and :func:`write_outputs` writes ``results.csv``,
``results.md`` and ``heatmap.png``.
"""

from p2pfl.sweep.grid import (
    Cell,
    GridAxis,
    ZipAxis,
    expand,
    parse_axis,
    parse_grid,
    split_values,
    zip_groups,
)
from p2pfl.sweep.heatmap import choose_axes, plot_heatmap
from p2pfl.sweep.outputs import write_outputs
from p2pfl.sweep.results import markdown_table, summarize, write_csv, write_markdown
from p2pfl.sweep.runner import (
    PlannedCell,
    SweepRun,
    cell_id,
    execute_cell,
    load_cell,
    plan_sweep,
    run_sweep,
)

__all__ = [
    "Cell",
    "GridAxis",
    "PlannedCell",
    "SweepRun",
    "ZipAxis",
    "cell_id",
    "choose_axes",
    "execute_cell",
    "expand",
    "load_cell",
    "markdown_table",
    "parse_axis",
    "parse_grid",
    "plan_sweep",
    "plot_heatmap",
    "run_sweep",
    "split_values",
    "summarize",
    "write_csv",
    "write_markdown",
    "write_outputs",
    "zip_groups",
]
