"""SIGKILL one node process mid-run: every survivor completes every round within the deadline.

Real processes and sockets on 127.0.0.1, started by the launcher's own code
(:func:`p2pfl.launcher.launch`), which also has to name the killed node.
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import pytest

from p2pfl.launcher import NodeFleet, launch, plan_launch
from p2pfl.node import read_node_log

pytestmark = pytest.mark.timeout(180)

ROUND_TIMEOUT = 3.0
VICTIM = 2
KILL_AFTER_ROUND = 5  # past the start-up rounds (eccentricity + 1 = 4 on a ring of 6)
OVERRIDES = [
    "run.name=kill",
    "run.rounds=10",
    "run.eval_every=5",
    "topology.kind=ring",
    "topology.n=6",
    "topology.params={}",
    "byzantine.count=0",
    "aggregator.name=mean",
    "aggregator.f=0",
    "model.params.hidden=[16]",
    f"network.round_timeout={ROUND_TIMEOUT}",
]


async def test_survivors_finish_every_round_after_a_sigkill(run_dir: Path) -> None:
    plan = plan_launch(None, OVERRIDES, run_dir, insecure=True)
    killed: list[int] = []

    def on_event(fleet: NodeFleet, node: int, event: dict[str, Any]) -> None:
        if node == VICTIM and event["event"] == "round" and event["round"] == KILL_AFTER_ROUND:
            fleet.signal(VICTIM, signal.SIGKILL)
            killed.append(event["round"])

    result = await launch(plan, on_event=on_event, plots=False)

    assert killed == [KILL_AFTER_ROUND]
    exits = {e.node: e for e in result.exits}
    assert exits[VICTIM].describe().startswith(f"node {VICTIM} killed by SIGKILL")
    assert [e.node for e in result.failed] == [VICTIM]
    for node in range(6):
        if node == VICTIM:
            continue
        events = read_node_log(plan.node_dir / f"node-{node}.jsonl")
        rounds = [e for e in events if e["event"] == "round"]
        assert [e["round"] for e in rounds] == list(range(1, 11)), node
        # A neighbour of the victim waits one deadline for it, then suspects it; a node
        # two hops away may wait for a lagging neighbour once, up to two deadlines.
        limit = ROUND_TIMEOUT if node in (1, 3) else 2 * ROUND_TIMEOUT
        for e in rounds[KILL_AFTER_ROUND:]:
            assert e["wait_seconds"] <= limit + 0.5, (node, e)
        end = next(e for e in events if e["event"] == "end")
        assert end["status"] == "done"
    for neighbour in (1, 3):
        events = read_node_log(plan.node_dir / f"node-{neighbour}.jsonl")
        last = [e for e in events if e["event"] == "round"][-1]
        assert VICTIM in last["missing"] and VICTIM in last["suspected"]
    assert result.summary is not None
    assert result.summary["node_exits"][str(VICTIM)] == "killed by SIGKILL"
    assert result.summary["nodes_here"] == list(range(6))
