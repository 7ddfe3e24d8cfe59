"""``p2pfl launch`` (real processes, real sockets on 127.0.0.1) reproduces ``p2pfl sim``.

Same scenario and seed, no faults: every node's accuracy at every evaluation round
is the simulator's, and every final parameter vector equals the simulator's to
1e-5 relative. The scenario has a sign-flipping attacker, so the Byzantine path
(its view built from what it actually received) is compared too.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from p2pfl.config import load_scenario
from p2pfl.experiment import build_experiment
from p2pfl.sim import Simulation
from p2pfl.sim.outputs import sim_summary

pytestmark = pytest.mark.timeout(180)

SCENARIO = """
[run]
name = "parity"
seed = 3
rounds = 4
eval_every = 2

[model]
name = "mlp"
params = { hidden = [32] }

[training]
local_steps = 3

[topology]
kind = "ring"
n = 6
params = {}

[byzantine]
nodes = [2]
attack = "sign_flip"

[aggregator]
name = "median"
f = 1
"""


def _launch(run_dir: Path, text: str) -> tuple[Path, Path]:
    scenario_file = run_dir / "parity.toml"
    scenario_file.write_text(text)
    return scenario_file, run_dir / "launch"


COMPRESSED = (
    SCENARIO
    + """
[compression]
name = "top_k"
params = { ratio = 0.05 }
scheme = "choco"
"""
)


def test_compressed_launch_matches_the_simulator_and_its_byte_count(run_dir: Path) -> None:
    scenario_file, out = _launch(run_dir, COMPRESSED)

    proc = subprocess.run(
        [sys.executable, "-m", "p2pfl", "launch", str(scenario_file), "--out", str(out), "--quiet"],
        capture_output=True,
        text=True,
        timeout=150,
    )
    sim = Simulation(build_experiment(load_scenario(scenario_file))).run()

    assert proc.returncode == 0, proc.stderr
    for node in range(6):
        final = np.load(out / "nodes" / f"node-{node}.npy", allow_pickle=False)
        expected = sim.params[node].numpy()
        assert np.linalg.norm(final - expected) <= 1e-5 * np.linalg.norm(expected)
    summary = json.loads((out / "summary.json").read_text())
    from p2pfl.sim.outputs import sim_summary

    expected_bytes = sim_summary(sim)
    measured = summary["bytes_sent_per_node_per_round"]
    wanted = expected_bytes["bytes_sent_per_node_per_round"]
    assert abs(measured - wanted) <= 0.01 * wanted, (measured, wanted)
    assert summary["bytes_sent_total"] == pytest.approx(
        expected_bytes["bytes_sent_total"], rel=0.01
    )
    # one top-k message (8 bytes per kept value, plus the header) per neighbour per round
    k = int(np.ceil(0.05 * sim.experiment.initial.numel()))
    assert 2 * 8 * k < wanted < 2 * (8 * k + 100)


def test_launch_matches_the_simulator(run_dir: Path) -> None:
    scenario_file, out = _launch(run_dir, SCENARIO)

    proc = subprocess.run(
        [sys.executable, "-m", "p2pfl", "launch", str(scenario_file), "--out", str(out), "--quiet"],
        capture_output=True,
        text=True,
        timeout=150,
    )
    sim = Simulation(build_experiment(load_scenario(scenario_file))).run()

    assert proc.returncode == 0, proc.stderr
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(records) == 6 * len(sim.history)
    for m in sim.history:
        for node in range(6):
            (rec,) = [r for r in records if r["round"] == m.round and r["node"] == node]
            assert rec["accuracy"] == pytest.approx(float(m.accuracy[node]), abs=1e-6)
            assert rec["byzantine"] == (node == 2)
    for node in range(6):
        final = np.load(out / "nodes" / f"node-{node}.npy", allow_pickle=False)
        expected = sim.params[node].numpy()
        assert np.linalg.norm(final - expected) <= 1e-5 * np.linalg.norm(expected)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["mode"] == "launch"
    assert summary["secure"] is True  # generated topology: launch made CurveZMQ keys
    assert summary["honest_accuracy_mean"] == pytest.approx(
        float(sim.final.honest_accuracy.mean()), abs=1e-6
    )
    assert set(summary["node_exits"].values()) == {"completed"}
    for name in ("accuracy.png", "topology.png", "topology.toml", "nodes/node-0.jsonl"):
        assert (out / name).is_file(), name


FROZEN_PERSONALIZED = (
    SCENARIO.replace('[model]\nname = "mlp"', '[model]\nname = "mlp"\nfreeze = ["1.*"]').replace(
        "[topology]",
        '[data]\npartition = "dirichlet"\npartition_params = { alpha = 0.3 }\n\n[topology]',
    )
    + "\n[evaluation]\nlocal_test = true\npersonalize_steps = 5\n"
)


def test_launch_of_a_frozen_personalized_run_matches_the_simulator(run_dir: Path) -> None:
    scenario_file = run_dir / "frozen.toml"
    scenario_file.write_text(FROZEN_PERSONALIZED)
    out = run_dir / "launch"

    proc = subprocess.run(
        [sys.executable, "-m", "p2pfl", "launch", str(scenario_file), "--out", str(out), "--quiet"],
        capture_output=True,
        text=True,
        timeout=150,
    )
    sim = Simulation(build_experiment(load_scenario(scenario_file))).run()

    assert proc.returncode == 0, proc.stderr
    summary = json.loads((out / "summary.json").read_text())
    shared = summary["shared_parameters"]
    assert shared == sim.params.shape[1] < summary["parameters"]
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    for m in sim.history:
        assert m.local_accuracy is not None
        for node in range(6):
            (rec,) = [r for r in records if r["round"] == m.round and r["node"] == node]
            assert rec["local_accuracy"] == pytest.approx(float(m.local_accuracy[node]), abs=1e-6)
    final = sim.final.personalized_accuracy
    assert final is not None
    for node in range(6):
        (rec,) = [r for r in records if r["round"] == 4 and r["node"] == node]
        assert rec["personalized_accuracy"] == pytest.approx(float(final[node]), abs=1e-6)
        vector = np.load(out / "nodes" / f"node-{node}.npy", allow_pickle=False)
        assert vector.shape == (shared,)  # what the node trained and sent: the shared slice
        expected = sim.params[node].numpy()
        assert np.linalg.norm(vector - expected) <= 1e-5 * np.linalg.norm(expected)
        start = json.loads((out / "nodes" / f"node-{node}.jsonl").read_text().splitlines()[0])
        assert start["event"] == "start" and start["parameters"] == shared
    want = sim_summary(sim)
    for key in ("personalized_accuracy_mean", "local_accuracy_p10", "honest_accuracy_p10"):
        assert summary[key] == pytest.approx(want[key], abs=1e-6)
