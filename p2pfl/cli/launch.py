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
named, with its exit status and last stderr lines, and the exit code is 1; a node
that cannot start because of its configuration (an address in use, a missing key)
stops every node at once, its error is printed, and the exit code is 2.

While the nodes run, their ``warning`` events (a round waited out, a neighbour
suspected or dead, a node kept its own vector or skipped rounds) are printed on
stderr as they happen, rate-limited (:class:`p2pfl.launcher.health.WarningPrinter`);
the final table and ``summary.json`` (``"node_health"``) count them per node.
SIGTERM and SIGHUP (a closed terminal, a dropped ssh session) stop every node
(they say bye) and exit with 128 + signal; if the launcher is killed outright,
its nodes notice and stop by themselves (``p2pfl node --parent-pid``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from p2pfl.cli.common import (
    add_scenario_arguments,
    output_dir,
    print_summary_table,
    scenario_from_args,
)
from p2pfl.errors import ConfigError, NodeFailure

T = TypeVar("T")

#: Signals that stop a launch like Ctrl-C does (SIGINT is asyncio's own).
STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


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
    p.add_argument(
        "--run-id",
        default=None,
        metavar="ID",
        help="the run id in summary.json (default: derived from the scenario and topology, "
        "the same on every host of a deployment); p2pfl report merges one run id only",
    )
    p.add_argument(
        "--quiet", action="store_true", help="no progress bar or table (warnings still show)"
    )
    return p


def run(args: argparse.Namespace) -> int:
    from p2pfl.launcher import launch, plan_launch
    from p2pfl.launcher.health import WarningPrinter

    scenario = scenario_from_args(args)
    out = output_dir(args.out, scenario, "launch")
    plan = plan_launch(
        args.scenario,
        args.overrides,
        out,
        host=args.host,
        key_dir=args.keys,
        insecure=args.insecure,
        run_id=args.run_id,
    )
    say: Any = (lambda *_, **__: None) if args.quiet else print
    security = "insecure (no CurveZMQ)" if plan.insecure else "CurveZMQ"
    say(
        f"p2pfl launch: {len(plan.nodes)} of {plan.experiment.n} nodes on this host, "
        f"{scenario.run.rounds} rounds, {security}, run {plan.run_id}; outputs in {out}"
    )
    warn = WarningPrinter(stderr_line)
    caught: list[int] = []
    try:
        if args.quiet or not sys.stderr.isatty():

            def started(fleet: Any) -> None:
                say(f"p2pfl launch: {len(fleet.pids)} node processes running", flush=True)

            def on_event(fleet: Any, node: int, event: dict[str, Any]) -> None:
                warn(node, event)

            result = _run(launch(plan, on_event=on_event, on_started=started), caught)
        else:
            result = _launch_with_bar(plan, launch, warn, caught)
    except asyncio.CancelledError:
        if not caught:
            raise
        name = signal.Signals(caught[0]).name
        stderr_line(f"p2pfl launch: terminated ({name}); every node process was stopped")
        return 128 + caught[0]
    if result.aborted_by is not None:
        raise ConfigError(f"{startup_error(result.aborted_by)}; every node process was stopped")
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


def stderr_line(text: str) -> None:
    """One line on stderr, now; nothing if the terminal is gone (SIGHUP)."""
    with contextlib.suppress(OSError):
        print(text, file=sys.stderr, flush=True)


def startup_error(exit_: Any) -> str:
    """What a node that exited with a configuration error said (its last stderr line)."""
    node = exit_.node
    if not exit_.stderr_tail:
        return f"node {node} exited with code {exit_.returncode} at start-up (configuration error)"
    line = exit_.stderr_tail[-1].removeprefix("p2pfl node: error: ")
    return line if line.startswith(f"node {node} ") else f"node {node}: {line}"


def _launch_with_bar(
    plan: Any, launch: Any, warn: Callable[[int, dict[str, Any]], None], caught: list[int]
) -> Any:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    done: dict[int, int] = {k: 0 for k in plan.nodes}
    # On stderr, with stderr redirected through it: warning lines print above the bar.
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[acc]}"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        redirect_stdout=False,
    ) as progress:
        task = progress.add_task(
            f"{len(plan.nodes)} node processes", total=plan.scenario.run.rounds, acc=""
        )
        accs: dict[int, float] = {}

        def on_event(fleet: Any, node: int, event: dict[str, Any]) -> None:
            warn(node, event)
            if event.get("event") == "round":
                done[node] = int(event["round"])
                progress.update(task, completed=min(done.values()))
            elif event.get("event") == "eval" and not event.get("byzantine"):
                accs[node] = float(event["accuracy"])
                mean = sum(accs.values()) / len(accs)
                progress.update(task, acc=f"honest acc {mean:.3f} (latest per node)")

        return _run(launch(plan, on_event=on_event), caught)


def _run(job: Coroutine[Any, Any, T], caught: list[int]) -> T:
    """``asyncio.run`` where SIGTERM and SIGHUP, like Ctrl-C, cancel the job (which stops
    the nodes); the first such signal is appended to ``caught``."""

    async def main() -> T:
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()

        def stop(signum: int) -> None:
            if not caught:  # a second signal while the nodes stop changes nothing
                caught.append(signum)
                task.cancel()

        for signum in STOP_SIGNALS:
            loop.add_signal_handler(signum, stop, signum)
        return await job

    return asyncio.run(main())
