"""SIGKILL one node process mid-run: it is dead within its liveness timeout, not a deadline.

Real processes and sockets on 127.0.0.1, started by the launcher's own code
(:func:`p2pfl.launcher.launch`), which also has to name the killed node. The
victim's neighbours stop hearing its heartbeats and declare it dead after
``network.dead_after`` (2 s here): that, once, is what a dead neighbour costs,
far less than the round patience (10 s), which is never waited out. The delay
reaches nodes further away one hop per round (they wait for neighbours that wait),
once each. Every survivor completes every round; nobody waits for the dead node
afterwards.
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import pytest

from p2pfl.launcher import NodeFleet, launch, plan_launch
from p2pfl.node import read_node_log

pytestmark = pytest.mark.timeout(180)

ROUND_TIMEOUT = 10.0
DEAD_AFTER = 2.0
VICTIM = 2
KILL_AFTER_ROUND = 3
ROUNDS = 40
OVERRIDES = [
    "run.name=kill",
    f"run.rounds={ROUNDS}",
    "run.eval_every=10",
    "training.local_steps=5",
    "topology.kind=ring",
    "topology.n=6",
    "topology.params={}",
    "byzantine.count=0",
    "aggregator.name=mean",
    "aggregator.f=0",
    "model.params.hidden=[16]",
    f"network.round_timeout={ROUND_TIMEOUT}",
    f"network.dead_after={DEAD_AFTER}",
    "network.heartbeat_interval=0.2",
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
    # The launcher sees the victim's round-3 event late on a loaded machine, and the
    # victim runs on meanwhile: it died after the last round it logged.
    died_after = max(
        e["round"]
        for e in read_node_log(plan.node_dir / f"node-{VICTIM}.jsonl")
        if e["event"] == "round"
    )
    assert died_after <= ROUNDS - 5, f"the kill came after round {died_after}: too late to test"
    exits = {e.node: e for e in result.exits}
    assert exits[VICTIM].describe().startswith(f"node {VICTIM} killed by SIGKILL")
    assert [e.node for e in result.failed] == [VICTIM]
    death_waits = []
    for node in range(6):
        if node == VICTIM:
            continue
        events = read_node_log(plan.node_dir / f"node-{node}.jsonl")
        rounds = [e for e in events if e["event"] == "round"]
        assert [e["round"] for e in rounds] == list(range(1, ROUNDS + 1)), node
        after = rounds[died_after:]
        # Nobody waits out the patience: the victim is found dead (or, two hops away,
        # a neighbour says it waits for it) well before.
        assert not any(e["waited_out"] for e in after), node
        assert all(e["wait_seconds"] < ROUND_TIMEOUT for e in after), node
        # The delay reaches each survivor once (a hop further each round, as any delay
        # does in synchronous rounds); the dead node is never waited for again.
        assert sum(e["wait_seconds"] >= DEAD_AFTER * 0.9 for e in after) <= 1, node
        end = next(e for e in events if e["event"] == "end")
        assert end["status"] == "done"
        if node in (1, 3):
            death_waits.append(max(e["wait_seconds"] for e in after))
            dead = [e for e in events if e["event"] == "warning" and e["kind"] == "dead"]
            assert [e["peers"] for e in dead] == [[VICTIM]], node
            assert VICTIM in after[-1]["missing"] and VICTIM in after[-1]["dead"]
    # What the death cost its neighbours, once: about the liveness timeout.
    assert all(DEAD_AFTER * 0.9 <= w < ROUND_TIMEOUT for w in death_waits), death_waits
    assert result.summary is not None
    assert result.summary["node_exits"][str(VICTIM)] == "killed by SIGKILL"
    assert result.summary["nodes_here"] == list(range(6))
