"""A straggler delays its neighbours by at most the round deadline per round.

Four ``p2pfl node`` processes on a ring, started by the launcher's own code
(:func:`p2pfl.launcher.launch`). Node 2 is made slow from outside, with no hook in
the node: after the start-up rounds it is frozen (``SIGSTOP``) for longer than a
round deadline, thawed (``SIGCONT``) briefly, frozen again, until it exits. A
frozen process is the worst straggler there is: it neither trains nor answers.

Measured from the node logs (``round`` events): every other node completes every
round (the straggler may skip rounds, through a logged catch-up round, to rejoin
them); a round's wait is at most one deadline, or two in a round where the node
waited longer for a lagging neighbour (the one-off resynchronisation of
:mod:`p2pfl.node.node`); and over the frozen stretch the others' rounds take at
most one deadline each on average. Also checks that ``summary.json`` reports
each node's ``rejections``: only timing ones (vectors from neighbours that ran ahead
of the frozen node, or that arrived after their round closed).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _procs import no_leftover_processes

from p2pfl._compat import timeout as async_timeout
from p2pfl.launcher import NodeFleet, launch, plan_launch
from p2pfl.node import read_node_log

pytestmark = pytest.mark.timeout(120)

DEADLINE = 1.0
FROZEN_S = 1.6  # longer than a deadline: the neighbours must stop waiting for it
THAWED_S = 0.1
STRAGGLER = 2
ROUNDS = 14
SLACK_S = 0.5  # scheduling noise on a loaded 2-core machine
OVERRIDES = [
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
    f"network.round_timeout={DEADLINE}",
    "network.hello_timeout=10.0",
]


@pytest.fixture
def run_dir(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path
    assert no_leftover_processes(tmp_path) == []


async def test_a_straggler_delays_its_neighbours_by_at_most_a_deadline_per_round(
    run_dir: Path,
) -> None:
    plan = plan_launch(None, OVERRIDES, run_dir, insecure=True)
    start_freezing = asyncio.Event()
    frozen_rounds: list[int] = []
    holder: list[NodeFleet] = []

    def on_event(fleet: NodeFleet, node: int, event: dict[str, Any]) -> None:
        # Start once past the start-up rounds (their deadlines allow for start-up skew).
        if node == STRAGGLER and event["event"] == "round" and event["round"] == 3:
            start_freezing.set()

    async def freezer() -> None:
        await start_freezing.wait()
        fleet = holder[0]
        while True:
            fleet.signal(STRAGGLER, signal.SIGSTOP)
            frozen_rounds.append(1)
            await asyncio.sleep(FROZEN_S)
            fleet.signal(STRAGGLER, signal.SIGCONT)
            await asyncio.sleep(THAWED_S)

    task: asyncio.Task[None] | None = None

    def on_started(fleet: NodeFleet) -> None:
        nonlocal task
        holder.append(fleet)
        task = asyncio.create_task(freezer())

    try:
        async with async_timeout(100):
            result = await launch(plan, on_event=on_event, on_started=on_started, plots=False)
    finally:
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if holder:
            holder[0].signal(STRAGGLER, signal.SIGCONT)

    assert frozen_rounds, "the straggler was never frozen"
    assert result.failed == []
    for node in range(4):
        events = read_node_log(plan.node_dir / f"node-{node}.jsonl")
        rounds = [e for e in events if e["event"] == "round"]
        if node == STRAGGLER:
            # Left behind, it may skip rounds to rejoin its neighbours, but only through a
            # logged catch-up round, and it still ends with the last round.
            numbers = [e["round"] for e in rounds]
            assert numbers == sorted(set(numbers)) and numbers[-1] == ROUNDS, numbers
            jumps = {b for a, b in zip([0, *numbers], numbers, strict=False) if b > a + 1}
            caught_up = {e["round"] for e in events if e["event"] == "catch_up"}
            assert jumps <= caught_up, (jumps, caught_up)
            continue
        assert [e["round"] for e in rounds] == list(range(1, ROUNDS + 1)), node
        late = rounds[3:]
        for e in late:
            allowed = (2 if e["waited_longer_for"] else 1) * DEADLINE + SLACK_S
            assert e["wait_seconds"] <= allowed, (node, e)
        # Amortised: a deadline per round at most (plus noise), never a freeze per round.
        assert sum(e["wait_seconds"] for e in late) <= len(late) * DEADLINE + SLACK_S, node
    # The straggler really was late for its neighbours at least once.
    waits = [
        e["wait_seconds"]
        for n in (1, 3)
        for e in read_node_log(plan.node_dir / f"node-{n}.jsonl")
        if e["event"] == "round" and e["round"] > 3
    ]
    assert max(waits) >= DEADLINE * 0.9
    assert result.summary is not None
    rejections = result.summary["rejections"]
    assert sorted(rejections) == ["0", "1", "2", "3"]
    for node, counts in rejections.items():
        assert counts["accepted"] > ROUNDS // 2, node  # hellos, vectors and byes
        # Timing alone explains every rejection: a neighbour that ran more than two rounds
        # ahead (future_round), or a vector that arrived more than two rounds late
        # (stale_round). How many depends on scheduling; nothing else (decode, length,
        # identity) may appear.
        assert set(counts["by_reason"]) <= {"future_round", "stale_round"}, (node, counts)
