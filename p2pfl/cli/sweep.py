"""``p2pfl sweep``: run a scenario over a grid of values x seeds; tables and heatmaps.

``p2pfl sweep SCENARIO.toml --grid aggregator.name=mean,median --grid
byzantine.attack=sign_flip,alie --seeds 3 --jobs 2 --out runs/x`` runs the 12 cells
(2 x 2 x 3), two at a time, and writes ``results.csv``, ``results.md`` and
``heatmap.png`` to ``--out``. Running it again with the same ``--out`` skips the cells
already finished (their results are in ``--out/cells/``). Every cell's scenario is
checked before anything runs: a bad ``--grid`` or ``--set`` prints one line and
exits with code 2. ``--zip`` pairs keys instead of crossing them:
``--zip byzantine.attack=alie,ipm --zip byzantine.params={z=10},{eps=0.1}`` adds
one dimension of two values (ALIE with z = 10, IPM with eps = 0.1); a ``GROUP:``
prefix (``--zip rule:aggregator.name=...``) starts another such dimension. A sweep
in which some run failed still writes its tables, then exits with code 1.
``--executor ray [--address ADDR]`` runs the cells as Ray tasks
(:mod:`p2pfl.sweep.ray_executor`); the outputs are the same.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from p2pfl.cli.common import output_dir


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "sweep",
        help="run a scenario over a grid of values and seeds (tables, heatmaps, resumable)",
        description="Run the cartesian product of the --grid values times --seeds seeds, "
        "--jobs at a time, skipping cells already finished in --out; write results.csv, "
        "results.md and heatmap.png (rows x columns: aggregator.name x byzantine.attack when "
        "both are swept; cell = worst honest node's final accuracy in the worst seed).",
    )
    p.add_argument("scenario", help="scenario TOML file")
    p.add_argument(
        "--grid",
        action="append",
        default=[],
        metavar="SECTION.KEY=V1,V2,...",
        help="a swept key and its values, parsed like --set values (repeatable)",
    )
    p.add_argument(
        "--zip",
        action="append",
        default=[],
        metavar="[GROUP:]SECTION.KEY=V1,V2,...",
        help="keys swept together, value by value: the --zip keys of a GROUP (default: one "
        "group) form one dimension, each with the same number of values, e.g. --zip "
        "byzantine.attack=alie,ipm --zip byzantine.params={z=10},{eps=0.1}; groups are crossed",
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override one scenario value in every cell (repeatable)",
    )
    p.add_argument(
        "--seeds",
        type=int,
        default=1,
        metavar="K",
        help="seeds run.seed .. run.seed+K-1 (default 1)",
    )
    p.add_argument(
        "--jobs", type=int, default=2, metavar="J", help="parallel worker processes (default 2)"
    )
    p.add_argument("--out", default=None, help="output directory (default: runs/sweep-NAME-TIME)")
    p.add_argument(
        "--heatmap",
        default=None,
        metavar="ROW,COL",
        help="swept keys for the heatmap's rows and columns (default: rule x attack)",
    )
    p.add_argument(
        "--executor",
        choices=("local", "ray"),
        default="local",
        help="where cells run: local worker processes (default), or Ray tasks on a Ray "
        "cluster (optional extra: pip install -e '.[ray]')",
    )
    p.add_argument(
        "--address",
        default=None,
        metavar="ADDR",
        help="with --executor ray: the Ray cluster (e.g. ray://head:10001, or auto); "
        "default: start a local Ray with --jobs CPUs and stop it afterwards",
    )
    p.add_argument("--retry-failed", action="store_true", help="re-run cells recorded as failed")
    p.add_argument("--quiet", action="store_true", help="no progress bar or table")
    return p


def run(args: argparse.Namespace) -> int:
    from p2pfl.config import load_scenario
    from p2pfl.errors import ConfigError
    from p2pfl.sweep import parse_grid, plan_sweep, run_sweep, write_outputs, zip_groups
    from p2pfl.sweep.heatmap import parse_axes
    from p2pfl.sweep.runner import OK, load_cell

    if args.jobs < 1:
        raise ConfigError(f"--jobs: must be an integer >= 1, got {args.jobs}")
    if args.address is not None and args.executor != "ray":
        raise ConfigError("--address: only with --executor ray (the Ray cluster to use)")
    if args.executor == "ray":
        from p2pfl.sweep.ray_executor import import_ray

        import_ray()  # a missing extra is a usage error, before anything is planned
    axes = parse_grid(args.grid, args.zip)
    keys = [a.key for a in axes]
    heat = parse_axes(args.heatmap, keys) if args.heatmap else None
    planned = plan_sweep(args.scenario, axes, args.overrides, args.seeds)
    base = load_scenario(args.scenario, args.overrides)
    out = output_dir(args.out, base, "sweep")
    done_before = sum(
        1
        for p in planned
        if (r := load_cell(out, p.id)) is not None and (r["status"] == OK or not args.retry_failed)
    )
    say = (lambda *_: None) if args.quiet else print
    say(
        f"p2pfl sweep: {len(planned)} runs ({len(planned) // args.seeds} cells x {args.seeds} "
        f"seeds), {_where(args)}; skipping {done_before} already finished in {out}"
    )
    live = not args.quiet and sys.stdout.isatty()
    if live:
        result = _run_with_bar(planned, out, args)
    else:
        count = [0]

        def log(record: dict[str, Any], skipped: bool) -> None:
            count[0] += 1
            if not skipped:
                say(f"[{count[0]}/{len(planned)}] {_line(record)}")

        result = run_sweep(planned, out, on_done=log, **_run_options(args))
    spec = {
        "scenario": str(args.scenario),
        "grid": list(args.grid),
        "zip": list(args.zip),
        "set": list(args.overrides),
        "seeds": [base.run.seed + s for s in range(args.seeds)],
        "runs": len(planned),
    }
    written = write_outputs(
        out, result.records, keys, spec, axes=heat, title=base.run.name, groups=zip_groups(axes)
    )
    if not args.quiet:
        _print_table(result.records, keys, base.run.name)
        print(
            f"{len(planned)} runs: {result.skipped} skipped (already finished), "
            f"{result.ran} run, {result.failed} failed"
        )
        print("outputs: " + ", ".join(str(p) for p in written))
    _warn(result.records)
    if result.failed:
        print(
            f"p2pfl sweep: {result.failed} of {len(planned)} runs failed (their rows say why; "
            "--retry-failed runs them again)",
            file=sys.stderr,
        )
        return 1
    return 0


def _run_options(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "jobs": args.jobs,
        "retry_failed": args.retry_failed,
        "executor": args.executor,
        "address": args.address,
    }


def _where(args: argparse.Namespace) -> str:
    if args.executor == "ray":
        return f"Ray tasks on {args.address or f'a local Ray with {args.jobs} CPUs'}"
    return f"{args.jobs} jobs"


def _warn(records: Any) -> None:
    """Each distinct knowledge warning once, with how many runs it concerns."""
    counts: dict[str, int] = {}
    for r in records:
        for w in r.get("warnings") or []:
            counts[w] = counts.get(w, 0) + 1
    for w, k in counts.items():
        print(f"warning ({k} runs): {w}", file=sys.stderr)


def _print_table(records: Any, keys: list[str], title: str) -> None:
    """A compact end-of-sweep table (the full one is results.md)."""
    from rich.console import Console
    from rich.table import Table

    from p2pfl.sweep.grid import short_names
    from p2pfl.sweep.results import summarize

    cells = summarize(records, keys)
    table = Table(title=f"p2pfl sweep: {title}")
    for k in keys:
        table.add_column(short_names(keys)[k])
    for col in ("acc", "worst", "status"):
        table.add_column(col, justify="right" if col != "status" else "left")
    with_asr = any(c.asr is not None for c in cells)
    if with_asr:
        table.add_column("ASR", justify="right")
    for c in cells:
        status = "ok" if c.ok == c.runs else f"{c.runs - c.ok}/{c.runs} failed"
        row = [*c.values, _num(c.acc_mean), _num(c.worst), status]
        table.add_row(*row, *([_num(c.asr)] if with_asr else []))
    Console().print(table)


def _num(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


def _line(record: dict[str, Any]) -> str:
    from p2pfl.sweep.grid import short_names

    names = short_names(list(record["values"]))
    label = " ".join(f"{names[k]}={v}" for k, v in record["values"].items())
    label = f"{label} seed={record['seed']}".strip()
    if record["status"] != "ok":
        return f"{label}: failed: {record['error']}"
    return (
        f"{label}: honest acc mean {record['honest_accuracy_mean']:.3f} "
        f"min {record['honest_accuracy_min']:.3f} ({record['wall_seconds']:.1f} s)"
    )


def _short(record: dict[str, Any]) -> str:
    """The last finished run, short enough to leave the bar its width."""
    values = " ".join(str(v) for v in record["values"].values())
    if record["status"] != "ok":
        return f"{values} s{record['seed']}: failed"
    return f"{values} s{record['seed']}: {record['honest_accuracy_mean']:.3f}"


def _run_with_bar(planned: Any, out: Any, args: argparse.Namespace) -> Any:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from p2pfl.sweep import run_sweep

    with Progress(
        TextColumn("[bold]sweep"),
        BarColumn(bar_width=30),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[last]}"),
    ) as progress:
        task = progress.add_task("sweep", total=len(planned), last="")

        def on_done(record: dict[str, Any], skipped: bool) -> None:
            progress.update(task, advance=1, last="" if skipped else _short(record))

        return run_sweep(planned, out, on_done=on_done, **_run_options(args))
