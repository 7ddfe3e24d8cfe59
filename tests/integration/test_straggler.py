"""Stragglers: slow is not dead, and a straggler costs its neighbours bounded time.

Four ``p2pfl node`` processes on a ring, started by the launcher's own code
(:func:`p2pfl.launcher.launch`). Node 2 is made slow from outside, with no hook in
the node: after round 3 it is frozen (``SIGSTOP``) for ``FROZEN_S``, thawed
(``SIGCONT``) briefly, frozen again, until it exits. A frozen process is the worst
straggler there is: it neither trains nor answers, nor sends heartbeats.

- Frozen for less than the patience (and the liveness timeout), it is *slow*: its
  neighbours wait for it every round, nobody is cut, and the run computes exactly
  what ``p2pfl sim`` computes, node for node.
- Frozen for longer than the patience's floor, it is cut when the patience runs
  out; every other node still completes every round, each wait is within its
  round's patience, and the patience stays bounded. ``summary.json`` reports only
  timing rejections (vectors from neighbours that ran ahead of the frozen node,
  or that arrived after their round closed).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _procs import no_leftover_processes

from p2pfl._compat import timeout as async_timeout
from p2pfl.config import load_scenario
from p2pfl.experiment import build_experiment
from p2pfl.launcher import LaunchResult, NodeFleet, launch, plan_launch
from p2pfl.node import read_node_log
from p2pfl.sim import Simulation

pytestmark = pytest.mark.timeout(180)

FROZEN_S = 1.6
THAWED_S = 0.1
STRAGGLER = 2
ROUNDS = 12
SLACK_S = 0.5  # scheduling noise on a loaded 2-core machine


def overrides(round_timeout: float) -> list[str]:
    return [
        "run.name=straggler",
        f"run.rounds={ROUNDS}",
        f"run.eval_every={ROUNDS}",
        "topology.kind=ring",
        "topology.n=4",
        "topology.params={}",
        "byzantine.count=0",
        "aggregator.name=mean",
        "aggregator.f=0",
        "model.params.hidden=[16]",
        f"network.round_timeout={round_timeout}",
        "network.hello_timeout=30.0",
        "network.dead_after=8.0",  # a freeze is not a death here
    ]


@pytest.fixture
def run_dir(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path
    assert no_leftover_processes(tmp_path) == []


async def launch_with_a_straggler(run_dir: Path, round_timeout: float) -> tuple[Any, LaunchResult]:
    plan = plan_launch(None, overrides(round_timeout), run_dir, insecure=True)
    start_freezing = asyncio.Event()
    freezes: list[int] = []
    holder: list[NodeFleet] = []

    def on_event(fleet: NodeFleet, node: int, event: dict[str, Any]) -> None:
        if node == STRAGGLER and event["event"] == "round" and event["round"] == 3:
            start_freezing.set()

    async def freezer() -> None:
        await start_freezing.wait()
        fleet = holder[0]
        while True:
            fleet.signal(STRAGGLER, signal.SIGSTOP)
            freezes.append(1)
            await asyncio.sleep(FROZEN_S)
            fleet.signal(STRAGGLER, signal.SIGCONT)
            await asyncio.sleep(THAWED_S)

    task: asyncio.Task[None] | None = None

    def on_started(fleet: NodeFleet) -> None:
        nonlocal task
        holder.append(fleet)
        task = asyncio.create_task(freezer())

    try:
        async with async_timeout(160):
            result = await launch(plan, on_event=on_event, on_started=on_started, plots=False)
    finally:
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if holder:
            holder[0].signal(STRAGGLER, signal.SIGCONT)
    assert freezes, "the straggler was never frozen"
    assert result.failed == []
    return plan, result


def rounds_of(plan: Any, node: int) -> list[dict[str, Any]]:
    events = read_node_log(plan.node_dir / f"node-{node}.jsonl")
    return [e for e in events if e["event"] == "round"]


async def test_a_slow_straggler_is_waited_for_and_the_run_matches_the_simulator(
    run_dir: Path,
) -> None:
    # Patience floor 4 s > each 1.6 s freeze: the straggler is slow, never cut.
    plan, result = await launch_with_a_straggler(run_dir, round_timeout=4.0)

    for node in range(4):
        rounds = rounds_of(plan, node)
        assert [e["round"] for e in rounds] == list(range(1, ROUNDS + 1)), node
        assert not any(e["waited_out"] or e["missing"] for e in rounds), node
    waits = [e["wait_seconds"] for n in (1, 3) for e in rounds_of(plan, n)]
    assert max(waits) >= FROZEN_S / 2  # they really did wait for it
    sim = Simulation(build_experiment(load_scenario(None, overrides(4.0)))).run()
    assert result.summary is not None
    for node in range(4):
        final = np.load(plan.node_dir / f"node-{node}.npy", allow_pickle=False)
        expected = sim.params[node].numpy()
        assert np.linalg.norm(final - expected) <= 1e-5 * np.linalg.norm(expected), node
        counters = result.summary["node_counters"][str(node)]
        assert counters["rounds_waited_out"] == 0 and counters["warnings"] == {}, node


async def test_a_straggler_frozen_past_the_patience_costs_bounded_time(run_dir: Path) -> None:
    # Patience floor 1 s < each 1.6 s freeze: the first freeze cuts it.
    plan, result = await launch_with_a_straggler(run_dir, round_timeout=1.0)

    # what the straggler's neighbours were patient for, by round (they wait for it directly)
    patience_of = {n: {e["round"]: e["patience"] for e in rounds_of(plan, n)} for n in (1, 3)}
    for node in range(4):
        rounds = rounds_of(plan, node)
        if node == STRAGGLER:
            # Left behind, it may skip rounds to rejoin its neighbours, but only through a
            # logged catch-up round, and it still ends with the last round.
            events = read_node_log(plan.node_dir / f"node-{node}.jsonl")
            numbers = [e["round"] for e in rounds]
            assert numbers == sorted(set(numbers)) and numbers[-1] == ROUNDS, numbers
            jumps = {b for a, b in zip([0, *numbers], numbers, strict=False) if b > a + 1}
            caught_up = {e["round"] for e in events if e["event"] == "catch_up"}
            assert jumps <= caught_up, (jumps, caught_up)
            continue
        assert [e["round"] for e in rounds] == list(range(1, ROUNDS + 1)), node
        for e in rounds:
            # a wait never exceeds the round's patience (plus noise), and for node 0, whose
            # neighbours wait for the straggler and say so (Alive's wait_ms), that plus the
            # wait they announced (node.py, "Waiting"); the patience adapts to the
            # straggler's lateness but stays within a few freezes
            bound = e["patience"]
            if node not in patience_of:
                r = e["round"]
                bound += max(patience_of[n].get(k, 0.0) for n in (1, 3) for k in (r - 1, r))
            assert e["wait_seconds"] <= bound + SLACK_S, (node, e)
            assert e["patience"] <= 5 * (FROZEN_S + THAWED_S) + SLACK_S, (node, e)
    waited_out = [
        e
        for n in (1, 3)
        for e in rounds_of(plan, n)
        if e["waited_out"] and STRAGGLER in e["missing"]
    ]
    assert waited_out, "the straggler was never cut"
    assert result.summary is not None
    rejections = result.summary["rejections"]
    assert sorted(rejections) == ["0", "1", "2", "3"]
    for node, counts in rejections.items():
        assert counts["accepted"] > ROUNDS // 2, node  # hellos, heartbeats, vectors, byes
        # Timing alone explains every rejection: a neighbour that ran more than two rounds
        # ahead (future_round), or a vector that arrived more than two rounds late
        # (stale_round). Nothing else (decode, length, identity) may appear.
        assert set(counts["by_reason"]) <= {"future_round", "stale_round"}, (node, counts)
