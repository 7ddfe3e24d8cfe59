"""Run outputs shared by ``sim``, ``launch``, ``report`` and ``sweep``.

A run directory holds ``metrics.jsonl`` (one JSON object per node per evaluation
round), ``summary.json`` and plots. Every command writes the same record format,
so :func:`summarize_records` and :func:`plot_accuracy` serve them all.
"""

from p2pfl.report.outputs import (
    NodeRecord,
    byte_counts,
    derive_run_id,
    metrics_line,
    read_metrics,
    round_summaries,
    summarize_records,
    write_json,
    write_metrics,
)
from p2pfl.report.plots import plot_accuracy

__all__ = [
    "NodeRecord",
    "byte_counts",
    "derive_run_id",
    "metrics_line",
    "plot_accuracy",
    "read_metrics",
    "round_summaries",
    "summarize_records",
    "write_json",
    "write_metrics",
]
