"""``p2pfl sim``: run a scenario in the local simulator and write its outputs."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any

from p2pfl.cli.common import (
    add_scenario_arguments,
    output_dir,
    print_summary_table,
    scenario_from_args,
)


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "sim",
        help="simulate decentralized learning on a topology in one process",
        description="Simulate a scenario (default: the embedded digits scenario) and write "
        "metrics.jsonl, summary.json, accuracy.png and topology.png to --out.",
    )
    add_scenario_arguments(p)
    p.add_argument("--out", default=None, help="output directory (default: runs/sim-NAME-TIME)")
    p.add_argument("--quiet", action="store_true", help="no progress bar or table")
    return p


def sim_records(result: Any) -> list[dict[str, Any]]:
    """``metrics.jsonl`` records of a :class:`~p2pfl.sim.SimResult`."""
    byz = result.experiment.byzantine
    out = []
    for m in result.history:
        for node in range(m.accuracy.numel()):
            out.append(
                {
                    "round": m.round,
                    "node": node,
                    "byzantine": node in byz,
                    "accuracy": float(m.accuracy[node]),
                    "test_loss": float(m.test_loss[node]),
                    "train_loss": float(m.train_loss[node]),
                    "distance_to_mean": float(m.distance_to_mean[node]),
                }
            )
    return out


def write_run_outputs(result: Any, out: Path, plots: bool = True) -> dict[str, Any]:
    """Write metrics.jsonl, summary.json and (optionally) the two plots; return the summary."""
    from p2pfl.report import plot_accuracy, summarize_records, write_json, write_metrics

    exp = result.experiment
    records = sim_records(result)
    write_metrics(out / "metrics.jsonl", records)
    summary = summarize_records(
        records,
        exp.scenario.to_dict(),
        result.wall_seconds,
        extra={
            "mode": "sim",
            "nodes": exp.n,
            "byzantine_nodes": sorted(exp.byzantine),
            "parameters": int(exp.initial.numel()),
        },
    )
    write_json(out / "summary.json", summary)
    if plots:
        from p2pfl.topology import draw

        plot_accuracy(summary["history"], out / "accuracy.png", title=exp.scenario.run.name)
        draw(dataclasses.replace(exp.topology, byzantine=exp.byzantine), out / "topology.png")
    return summary


def run(args: argparse.Namespace) -> int:
    from p2pfl.experiment import build_experiment
    from p2pfl.sim import Simulation

    scenario = scenario_from_args(args)
    exp = build_experiment(scenario)
    out = output_dir(args.out, scenario, "sim")
    sim = Simulation(exp)
    if args.quiet or not (sys.stderr.isatty() or sys.stdout.isatty()):
        result = sim.run()
    else:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        with Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[acc]}"),
            TimeElapsedColumn(),
        ) as progress:
            task = progress.add_task(
                f"{exp.n} nodes, {scenario.aggregator.name}", total=scenario.run.rounds, acc=""
            )

            def on_round(r: int, metrics: Any) -> None:
                acc = (
                    f"honest acc {float(metrics.honest_accuracy.mean()):.3f}"
                    if metrics is not None
                    else progress.tasks[0].fields["acc"]
                )
                progress.update(task, completed=r, acc=acc)

            result = sim.run(on_round)
    summary = write_run_outputs(result, out)
    if not args.quiet:
        print_summary_table(summary, f"p2pfl sim: {scenario.run.name}", out)
    return 0
