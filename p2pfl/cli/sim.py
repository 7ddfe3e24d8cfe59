"""``p2pfl sim``: run a scenario in the local simulator and write its outputs.

The output directory is created (and named) before the first round;
``metrics.jsonl`` grows by one record per node at every evaluation. On a terminal
a progress bar shows the rounds, the honest accuracy and an ETA; otherwise (a
log file, a pipe) one line per evaluation: round, honest mean and worst accuracy,
elapsed time, ETA. Started by torchrun (``torchrun --nproc-per-node K -m p2pfl sim ...``), every rank
simulates its share of the nodes (:mod:`p2pfl.sim.distributed`) and rank 0 prints
and writes the outputs. Ctrl-C (SIGINT) or SIGTERM stops the run after the round in
progress and writes ``summary.json`` of the evaluations so far, marked
``"interrupted": true`` (exit code 128 + the signal number).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

from p2pfl.cli.common import (
    add_scenario_arguments,
    output_dir,
    print_summary_table,
    scenario_from_args,
)
from p2pfl.sim.distributed import launched_by_torchrun
from p2pfl.sim.outputs import sim_records, write_run_outputs

__all__ = ["add_parser", "run", "sim_records", "write_run_outputs"]


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "sim",
        help="simulate decentralized learning on a topology in one process",
        description="Simulate a scenario (default: the embedded digits scenario) and write "
        "metrics.jsonl (as rounds are evaluated), summary.json, accuracy.png and "
        "topology.png to --out. Ctrl-C keeps what was evaluated so far.",
    )
    add_scenario_arguments(p)
    p.add_argument("--out", default=None, help="output directory (default: runs/sim-NAME-TIME)")
    p.add_argument("--quiet", action="store_true", help="no progress bar, lines or table")
    return p


class Stopped(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived; ``signum`` says which."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """Within the block SIGINT and SIGTERM raise :class:`Stopped` (then the old handlers)."""

    def handler(signum: int, frame: Any) -> None:
        raise Stopped(signum)

    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def _clock(seconds: float) -> str:
    seconds = max(0, round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def progress_line(r: int, rounds: int, metrics: Any, elapsed: float) -> str:
    """One evaluation, for logs: ``round 10/50  acc mean 0.812 min 0.750  0:12 elapsed, ETA 0:48``."""
    acc = metrics.honest_accuracy
    eta = elapsed / r * (rounds - r) if r else 0.0
    return (
        f"round {r}/{rounds}  honest acc mean {float(acc.mean()):.3f} min {float(acc.min()):.3f}"
        f"  {_clock(elapsed)} elapsed, ETA {_clock(eta)}"
    )


def _run_with_lines(sim: Any, rounds: int, log: Callable[[Any], None]) -> Any:
    start = time.perf_counter()

    def on_round(r: int, metrics: Any) -> None:
        if metrics is not None:
            log(metrics)
            print(progress_line(r, rounds, metrics, time.perf_counter() - start), flush=True)

    return sim.run(on_round)


def _run_with_bar(sim: Any, rounds: int, label: str, log: Callable[[Any], None]) -> Any:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[acc]}"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    ) as progress:
        task = progress.add_task(label, total=rounds, acc="")

        def on_round(r: int, metrics: Any) -> None:
            acc = progress.tasks[0].fields["acc"]
            if metrics is not None:
                log(metrics)
                acc = f"honest acc {float(metrics.honest_accuracy.mean()):.3f}"
            progress.update(task, completed=r, acc=acc)

        return sim.run(on_round)


def run(args: argparse.Namespace) -> int:
    from p2pfl.experiment import build_experiment
    from p2pfl.sim import Simulation

    scenario = scenario_from_args(args)
    if launched_by_torchrun():
        return _run_distributed(args, scenario)
    exp = build_experiment(scenario)
    out = output_dir(args.out, scenario, "sim")
    return _run_and_write(args, Simulation(exp), out)


def _run_distributed(args: argparse.Namespace, scenario: Any) -> int:
    """One rank of ``torchrun ... -m p2pfl sim``: rank 0 reports and writes the outputs."""
    from p2pfl.device import resolve_device
    from p2pfl.experiment import build_experiment
    from p2pfl.sim.distributed import Comm, DistributedSimulation

    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    comm = Comm.start(resolve_device(scenario.run.device, local_rank))
    try:
        exp = build_experiment(scenario)
        sim = DistributedSimulation(exp, comm)
        if comm.rank != 0:
            sim.run()
            return 0
        out = output_dir(args.out, scenario, "sim")
        if not args.quiet:
            part = sim.partition
            print(
                f"p2pfl sim: {comm.world} ranks (torch.distributed), {part.method} partition, "
                f"{part.cut_edges} of {exp.topology.graph.number_of_edges()} edges cut",
                flush=True,
            )
        return _run_and_write(args, sim, out)
    finally:
        comm.close()


def _run_and_write(args: argparse.Namespace, sim: Any, out: Any) -> int:
    """Run ``sim`` with progress output, write its outputs to ``out``; the exit code."""
    from p2pfl.sim.outputs import MetricsLog

    exp = sim.exp
    scenario = exp.scenario
    rounds = scenario.run.rounds
    for warning in sim.warnings:
        print(f"warning: {warning}", file=sys.stderr, flush=True)
    if not args.quiet:
        print(
            f"p2pfl sim: {scenario.run.name}, {exp.n} nodes, {rounds} rounds; outputs in {out}",
            flush=True,
        )
    metrics_log = MetricsLog(out / "metrics.jsonl", exp)
    start = time.perf_counter()
    stopped: Stopped | None = None
    try:
        with stop_on_signals():
            if args.quiet:
                result = sim.run(lambda r, m: None if m is None else metrics_log.append(m))
            elif sys.stdout.isatty():
                label = f"{exp.n} nodes, {scenario.aggregator.name}"
                result = _run_with_bar(sim, rounds, label, metrics_log.append)
            else:
                result = _run_with_lines(sim, rounds, metrics_log.append)
    except Stopped as exc:
        stopped = exc
        result = sim.result(time.perf_counter() - start, interrupted=True)
    finally:
        metrics_log.close()
    summary = write_run_outputs(result, out, plots=stopped is None)
    if stopped is not None:
        print(
            f"p2pfl sim: stopped by {signal.Signals(stopped.signum).name} after round "
            f"{sim.round} of {rounds}; {len(result.history)} evaluations kept in {out} "
            '(summary.json: "interrupted": true)',
            file=sys.stderr,
        )
        return 128 + stopped.signum
    if not args.quiet:
        print_summary_table(summary, f"p2pfl sim: {scenario.run.name}", out)
        if result.diverged:
            first = min(result.diverged.values())
            print(
                f"diverged: {len(result.diverged)} honest nodes (the first in round {first}); "
                "see diverged_nodes in summary.json"
                + (
                    f"; stopped early after round {result.stopped_early}"
                    if result.stopped_early
                    else ""
                )
            )
    return 0
