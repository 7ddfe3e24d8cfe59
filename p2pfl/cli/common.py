"""Pieces shared by the commands: scenario arguments, output directories, result tables."""

from __future__ import annotations

import argparse
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from p2pfl.config import Scenario, load_scenario
from p2pfl.errors import ConfigError


def add_scenario_arguments(parser: argparse.ArgumentParser, optional: bool = True) -> None:
    parser.add_argument(
        "scenario",
        nargs="?" if optional else None,
        default=None,
        help="scenario TOML file (default: the embedded default scenario)"
        if optional
        else "scenario TOML file",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override one scenario value (repeatable), e.g. --set aggregator.name=krum",
    )


def scenario_from_args(args: argparse.Namespace) -> Scenario:
    return load_scenario(args.scenario, args.overrides)


def output_dir(requested: str | None, scenario: Scenario, command: str) -> Path:
    """The run directory: ``--out`` if given, else ``runs/<command>-<name>-<time>``."""
    if requested:
        out = Path(requested)
    else:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        out = Path("runs") / f"{command}-{scenario.run.name}-{stamp}"
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out}: exists and is not a directory")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"--out {out}: cannot create directory: {exc.strerror}") from None
    return out


def print_summary_table(summary: Mapping[str, Any], title: str, out: Path | None) -> None:
    """The end-of-run table: final honest accuracy, per-round history (thinned), outputs,
    and, for networked runs (``"node_health"``), the nodes that had trouble."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    hist: Sequence[Mapping[str, Any]] = summary["history"]
    table = Table(title=title)
    for col in (
        "round",
        "honest acc mean",
        "min",
        "p10",
        "std",
        "max",
        "train loss",
        "consensus dist",
    ):
        table.add_column(col, justify="right")
    step = max(1, len(hist) // 10)
    shown = list(hist[::step])
    if shown[-1] is not hist[-1]:
        shown.append(hist[-1])
    for h in shown:
        table.add_row(
            str(h["round"]),
            f"{h['honest_accuracy_mean']:.4f}",
            f"{h['honest_accuracy_min']:.4f}",
            _fmt(h.get("honest_accuracy_p10")),
            _fmt(h.get("honest_accuracy_std")),
            f"{h['honest_accuracy_max']:.4f}",
            _fmt(h.get("honest_train_loss")),
            _fmt(h.get("consensus_distance")),
        )
    console.print(table)
    console.print(
        f"final honest accuracy: mean [bold]{summary['honest_accuracy_mean']:.4f}[/bold], "
        f"min {summary['honest_accuracy_min']:.4f}, p10 {_fmt(summary.get('honest_accuracy_p10'))}, "
        f"std {_fmt(summary.get('honest_accuracy_std'))} after {summary['rounds']} rounds "
        f"in {summary['wall_seconds']:.1f} s"
    )
    per = summary.get("bytes_sent_per_node_per_round")
    if isinstance(per, int | float):
        console.print(
            f"bytes sent: {per:,.0f} per honest node per round, "
            f"{int(summary.get('bytes_sent_total', 0)):,} in total"
        )
    if summary.get("epsilon") is not None:
        console.print(
            f"privacy (DP-SGD): epsilon [bold]{summary['epsilon']:.3g}[/bold] "
            f"(largest over honest nodes) at delta {summary['delta']:.3g}, "
            f"noise multiplier {summary['noise_multiplier']:.4g}, clip norm {summary['clip_norm']:.4g}"
        )
    for prefix, label in (("local_accuracy", "local"), ("personalized_accuracy", "personalized")):
        if summary.get(f"{prefix}_mean") is not None:
            console.print(
                f"{label} accuracy (own test split): mean [bold]{summary[f'{prefix}_mean']:.4f}"
                f"[/bold], min {summary[f'{prefix}_min']:.4f}, p10 {summary[f'{prefix}_p10']:.4f}, "
                f"std {summary[f'{prefix}_std']:.4f}"
            )
    health = summary.get("node_health")
    if isinstance(health, Mapping):
        _print_node_health(console, health)
    missing = summary.get("missing_nodes")
    if missing:
        console.print(
            f"[bold yellow]missing nodes[/bold yellow] (in no merged directory): "
            f"{', '.join(map(str, missing))}"
        )
    if out is not None:
        console.print(f"outputs: {out}")


def _print_node_health(console: Any, health: Mapping[str, Any]) -> None:
    """Nodes with any warning or problem round, one row each; else one reassuring line."""
    from rich.table import Table

    from p2pfl.launcher.health import ROUND_COUNTERS, unhealthy

    trouble = unhealthy(health)
    if not trouble:
        console.print(
            f"node health: no warnings from any of {len(health)} nodes "
            "(no round waited out, kept its own vector or skipped)"
        )
        return
    table = Table(title=f"node health: {len(trouble)} of {len(health)} nodes had warnings")
    for col in ("node", "trained", "skipped", "kept own", "waited out"):
        table.add_column(col, justify="right")
    table.add_column("warnings (kind: count)")
    for node, h in trouble.items():
        table.add_row(
            node,
            *(str(h.get(key, 0)) for key in ROUND_COUNTERS),
            ", ".join(f"{k}: {v}" for k, v in h.get("warnings", {}).items()) or "-",
        )
    console.print(table)


def _fmt(value: Any) -> str:
    return "-" if value is None else f"{float(value):.4g}"
