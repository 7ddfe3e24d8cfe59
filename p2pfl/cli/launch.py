"""``p2pfl launch``: start this host's node processes, watch them, write the run outputs.

::

    p2pfl launch                                  # the embedded default: 16 processes here
    p2pfl launch SCENARIO.toml [--set k=v ...] [--host NAME] [--out DIR] [--keys DIR | --insecure]

With a generated topology every node runs here on ``network.host`` with free
ports (the resolved topology and fresh CurveZMQ keys go into ``DIR``); with a
topology file, the nodes whose address is on ``--host`` (default: all, when all
are local). Writes what ``p2pfl sim`` writes (``metrics.jsonl``, ``summary.json``,
``accuracy.png``, ``topology.png``) plus ``DIR/nodes/`` (a JSON-lines log, the
final parameters and the stderr of each node). A node that exits abnormally is
named, with its exit status and last stderr lines, and the exit code is 1.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Coroutine
from typing import Any, TypeVar

from p2pfl.cli.common import (
    add_scenario_arguments,
    output_dir,
    print_summary_table,
    scenario_from_args,
)
from p2pfl.errors import NodeFailure

T = TypeVar("T")


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "launch",
        help="run this host's nodes of a scenario as separate processes",
        description="Start every node whose address is on this host (default scenario: 16 "
        "nodes on 127.0.0.1) as a `p2pfl node` process, watch them, and write metrics.jsonl, "
        "summary.json, accuracy.png, topology.png and nodes/ to --out.",
    )
    add_scenario_arguments(p)
    p.add_argument(
        "--host", default=None, metavar="NAME", help="start the nodes whose address host is NAME"
    )
    p.add_argument("--out", default=None, help="output directory (default: runs/launch-NAME-TIME)")
    p.add_argument(
        "--keys", default=None, metavar="DIR", help="directory of the nodes' CurveZMQ keys"
    )
    p.add_argument(
        "--insecure",
        action="store_true",
        help="run without CurveZMQ (unencrypted, unauthenticated links)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar or table")
    return p


def run(args: argparse.Namespace) -> int:
    from p2pfl.launcher import launch, plan_launch

    scenario = scenario_from_args(args)
    out = output_dir(args.out, scenario, "launch")
    plan = plan_launch(
        args.scenario,
        args.overrides,
        out,
        host=args.host,
        key_dir=args.keys,
        insecure=args.insecure,
    )
    say: Any = (lambda *_, **__: None) if args.quiet else print
    security = "insecure (no CurveZMQ)" if plan.insecure else "CurveZMQ"
    say(
        f"p2pfl launch: {len(plan.nodes)} of {plan.experiment.n} nodes on this host, "
        f"{scenario.run.rounds} rounds, {security}; outputs in {out}"
    )
    try:
        if args.quiet or not sys.stdout.isatty():

            def started(fleet: Any) -> None:
                say(f"p2pfl launch: {len(fleet.pids)} node processes running", flush=True)

            result = _run(launch(plan, on_started=started))
        else:
            result = _launch_with_bar(plan, launch)
    except asyncio.CancelledError:
        print("p2pfl launch: terminated (SIGTERM); every node process was stopped", file=sys.stderr)
        return 128 + signal.SIGTERM
    for e in result.exits:
        if not e.ok:
            print(f"p2pfl launch: {e.describe()}", file=sys.stderr)
    if result.summary is not None and not args.quiet:
        print_summary_table(result.summary, f"p2pfl launch: {scenario.run.name}", out)
    if result.failed:
        names = ", ".join(str(e.node) for e in result.failed)
        raise NodeFailure(
            f"{len(result.failed)} of {len(result.exits)} node processes failed (node {names}); "
            f"see {plan.node_dir}/node-K.stderr"
        )
    return 0


def _launch_with_bar(plan: Any, launch: Any) -> Any:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    done: dict[int, int] = {k: 0 for k in plan.nodes}
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[acc]}"),
        TimeElapsedColumn(),
    ) as progress:
        task = progress.add_task(
            f"{len(plan.nodes)} node processes", total=plan.scenario.run.rounds, acc=""
        )
        accs: dict[int, float] = {}

        def on_event(fleet: Any, node: int, event: dict[str, Any]) -> None:
            if event.get("event") == "round":
                done[node] = int(event["round"])
                progress.update(task, completed=min(done.values()))
            elif event.get("event") == "eval" and not event.get("byzantine"):
                accs[node] = float(event["accuracy"])
                mean = sum(accs.values()) / len(accs)
                progress.update(task, acc=f"honest acc {mean:.3f} (latest per node)")

        return _run(launch(plan, on_event=on_event))


def _run(job: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run`` where SIGTERM, like Ctrl-C, cancels the job (which stops the nodes)."""

    async def main() -> T:
        task = asyncio.current_task()
        assert task is not None
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
        return await job

    return asyncio.run(main())
