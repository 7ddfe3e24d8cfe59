"""Crash and restart: SIGKILL f of N node processes, survivors finish; one comes back with --resume.

Real processes and sockets on 127.0.0.1, started by the launcher's own code
(:func:`p2pfl.launcher.launch`). The undisturbed run of the same scenario is the
simulator's (``p2pfl launch`` reproduces ``p2pfl sim`` exactly: test_parity.py).
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path
from typing import IO, Any

import numpy as np
import pytest

from p2pfl.config import load_scenario
from p2pfl.experiment import build_experiment
from p2pfl.launcher import NodeFleet, launch, plan_launch
from p2pfl.node import read_node_log
from p2pfl.sim import Simulation

pytestmark = pytest.mark.timeout(240)

N = 8
# Rounds take tens of milliseconds; a node process needs seconds to start (imports, data):
# enough rounds that the run is still going when the restarted node is up.
ROUNDS = 300
VICTIMS = (2, 5)  # f = 2 of N = 8
RESTARTED = 2
WATCHER = 0  # a survivor whose round events time the kill and the restart
KILL_AT_ROUND = 10  # past the start-up rounds (eccentricity + 1)
OVERRIDES = [
    "run.name=resume",
    f"run.rounds={ROUNDS}",
    "run.eval_every=100",
    "topology.kind=random_regular",
    f"topology.n={N}",
    "topology.params={degree = 4}",
    "byzantine.count=0",
    "aggregator.name=mean",
    "aggregator.f=0",
    "model.params.hidden=[16]",
    "training.local_steps=3",
    "network.round_timeout=3.0",
    "network.checkpoint_every=1",
]


def final_accuracy(events: list[dict[str, Any]]) -> float:
    evals = [e for e in events if e["event"] == "eval"]
    assert evals and evals[-1]["round"] == ROUNDS
    return float(evals[-1]["accuracy"])


async def test_kill_f_nodes_then_resume_one(run_dir: Path) -> None:
    plan = plan_launch(None, OVERRIDES, run_dir / "run", insecure=True)
    killed: list[int] = []
    restarted: list[subprocess.Popen[bytes]] = []
    streams: list[IO[bytes]] = []

    def on_event(fleet: NodeFleet, node: int, event: dict[str, Any]) -> None:
        if node != WATCHER or event["event"] != "round":
            return
        if event["round"] == KILL_AT_ROUND:
            for victim in VICTIMS:
                fleet.signal(victim, signal.SIGKILL)
            killed.append(event["round"])
            # restarted at once: it resumes from a checkpoint of round <= KILL_AT_ROUND and,
            # being up only seconds later, has many rounds to catch up
            out = (run_dir / "restarted.out").open("wb")
            streams.append(out)
            restarted.append(
                subprocess.Popen(
                    [*plan.node_command(RESTARTED), "--resume"],
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )

    try:
        result = await launch(plan, on_event=on_event, plots=False)
        assert restarted, "the watcher never reached the kill round"
        code = restarted[0].wait(timeout=60)
    finally:
        for proc in restarted:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        for stream in streams:
            stream.close()

    # -- survivors: every round, and the undisturbed run's accuracy within 2 points
    assert killed == [KILL_AT_ROUND]
    assert sorted(e.node for e in result.failed) == list(VICTIMS)
    survivors = [k for k in range(N) if k not in VICTIMS]
    accuracies = {}
    for node in survivors:
        events = read_node_log(plan.node_dir / f"node-{node}.jsonl")
        rounds = [e["round"] for e in events if e["event"] == "round"]
        assert rounds == list(range(1, ROUNDS + 1)), node
        assert [e["status"] for e in events if e["event"] == "end"] == ["done"]
        accuracies[node] = final_accuracy(events)
    sim = Simulation(build_experiment(load_scenario(None, OVERRIDES))).run()
    undisturbed = float(sim.final.honest_accuracy.mean())
    disturbed = float(np.mean(list(accuracies.values())))
    print(f"final honest accuracy: undisturbed {undisturbed:.4f}, survivors {disturbed:.4f}")
    assert abs(disturbed - undisturbed) <= 0.02, (disturbed, undisturbed, accuracies)

    # -- the restarted node: resumed from its checkpoint, caught up, finished
    output = (run_dir / "restarted.out").read_text()
    assert code == 0, output
    events = read_node_log(plan.node_dir / f"node-{RESTARTED}.jsonl")
    (resume,) = [e for e in events if e["event"] == "resume"]
    assert resume["round"] > 1
    (catch_up,) = [e for e in events if e["event"] == "catch_up"]
    assert catch_up["resumed_from"] == resume["round"]
    assert catch_up["round"] > KILL_AT_ROUND and catch_up["skipped"] > 0
    assert catch_up["received"], "the catch-up round received nothing"
    rounds = [e["round"] for e in events if e["event"] == "round"]
    assert rounds == list(range(catch_up["round"], ROUNDS + 1))
    assert [e["status"] for e in events if e["event"] == "end"] == ["done"]
    assert final_accuracy(events) >= disturbed - 0.05
    # its neighbours took it back: its vectors were aggregated again after the restart
    neighbours = [j for j in plan.experiment.neighbours(RESTARTED) if j not in VICTIMS]
    for j in neighbours:
        last = [
            e for e in read_node_log(plan.node_dir / f"node-{j}.jsonl") if e["event"] == "round"
        ]
        assert RESTARTED in last[-1]["received"], j
    # the log of the killed run is kept beside the resumed one
    before = read_node_log(plan.node_dir / f"node-{RESTARTED}.before-resume-1.jsonl")
    assert max(e["round"] for e in before if e["event"] == "round") >= resume["round"]
    print(
        f"node {RESTARTED}: resumed from round {resume['round']}, caught up at round "
        f"{catch_up['round']} (skipped {catch_up['skipped']}), final accuracy "
        f"{final_accuracy(events):.4f}"
    )
