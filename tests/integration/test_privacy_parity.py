"""DP-SGD over real processes: ``p2pfl launch`` reproduces ``p2pfl sim`` with the same seed.

Every node samples its Poisson batches and draws its Gaussian noise from the seed, so
the accuracies and final parameters of a private run are the simulator's, as in
tests/integration/test_parity.py; each node's log ends with its epsilon, and the
launch summary's privacy fields are the simulator's.
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
name = "dp-parity"
seed = 4
rounds = 4
eval_every = 2

[model]
name = "mlp"
params = { hidden = [32] }

[training]
local_steps = 3
batch_size = 16
momentum = 0.5

[topology]
kind = "ring"
n = 5
params = {}

[byzantine]
nodes = [1]
attack = "sign_flip"

[aggregator]
name = "trimmed_mean"
f = 1

[privacy]
mechanism = "dp_sgd"
clip_norm = 0.5
noise_multiplier = 0.8
"""


def test_private_launch_matches_the_simulator(run_dir: Path) -> None:
    scenario_file = run_dir / "dp.toml"
    scenario_file.write_text(SCENARIO)
    out = run_dir / "launch"

    proc = subprocess.run(
        [sys.executable, "-m", "p2pfl", "launch", str(scenario_file), "--out", str(out), "--quiet"],
        capture_output=True,
        text=True,
        timeout=150,
    )
    sim = Simulation(build_experiment(load_scenario(scenario_file))).run()
    expected = sim_summary(sim)

    assert proc.returncode == 0, proc.stderr
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(records) == 5 * len(sim.history)
    for m in sim.history:
        for node in range(5):
            (rec,) = [r for r in records if r["round"] == m.round and r["node"] == node]
            assert rec["accuracy"] == pytest.approx(float(m.accuracy[node]), abs=1e-6)
    for node in range(5):
        final = np.load(out / "nodes" / f"node-{node}.npy", allow_pickle=False)
        want = sim.params[node].numpy()
        assert np.linalg.norm(final - want) <= 1e-5 * np.linalg.norm(want)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["epsilon"] == pytest.approx(expected["epsilon"], rel=1e-12)
    assert summary["epsilon_per_node"] == pytest.approx(expected["epsilon_per_node"], rel=1e-12)
    assert set(summary["epsilon_per_node"]) == {"0", "2", "3", "4"}  # honest nodes only
    for key in ("delta", "noise_multiplier", "clip_norm"):
        assert summary[key] == expected[key], key
    for node in (0, 3):
        log = (out / "nodes" / f"node-{node}.jsonl").read_text().splitlines()
        (end,) = [e for e in map(json.loads, log) if e.get("event") == "end"]
        assert end["epsilon"] == pytest.approx(expected["epsilon_per_node"][str(node)], rel=1e-12)
        assert end["delta"] == expected["delta"]
