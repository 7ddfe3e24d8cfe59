"""Each published experiment's table is what its command produces: one cheap cell of each
is run again here and compared with the committed ``results.csv``.

The cell is rebuilt from the experiment's scenario file and the overrides its command
gives that cell; its id (a hash of the fully resolved scenario) must be in the table, so
a scenario edited without re-running the experiment fails here too. The run uses one
torch thread, as sweep workers do; the accuracies must agree to within one test sample
(1/360), so that another CPU's last-bit differences do not fail the test.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from p2pfl.config import load_scenario
from p2pfl.sweep import cell_id, execute_cell

EXPERIMENTS = Path(__file__).resolve().parents[2] / "sims" / "experiments"
ONE_SAMPLE = 1.0 / 360 + 1e-6


@pytest.fixture
def one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


CASES = {
    "rules-vs-attacks": (
        "scenario.toml",
        "results.csv",
        [
            "aggregator.name=trimmed_mean",
            "byzantine.attack=fang_median",
            "data.partition_params.alpha=0.3",
            "run.seed=1",
        ],
    ),
    "byzantine-fraction": (
        "scenario.toml",
        "results.csv",
        [
            "byzantine.count=4",
            "aggregator.name=median",
            "byzantine.attack=min_max",
            "data.partition_params.alpha=0.3",
            "run.seed=0",
        ],
    ),
    "dumbbell": (
        "scenario.toml",
        "results.csv",
        [
            "run.seed=0",
            "topology.file=topologies/by-class-seed0.toml",
            "aggregator.name=clipped_gossip",
            'aggregator.params={radius="adaptive"}',
            "data.partition=shards",
            "data.partition_params={shards_per_node=1}",
            "training.lr=0.3",
            "training.momentum=0.0",
            "training.local_steps=5",
            "run.rounds=60",
            "run.eval_every=5",
        ],
    ),
    "privacy": (
        "scenario.toml",
        "results.csv",
        [
            "privacy.mechanism=dp_sgd",
            "privacy.noise_multiplier=2.0",
            "byzantine.count=3",
            "byzantine.attack=alie",
            "aggregator.name=trimmed_mean",
            "run.seed=1",
        ],
    ),
    "ring-majority": (
        "paper.toml",
        "paper/results.csv",
        [
            "topology.file=topologies/paper-ring-no-majority.toml",
            "aggregator.name=trimmed_mean",
            "aggregator.params={}",
            "byzantine.attack=ipm",
            "byzantine.params={eps=0.1}",
            "run.seed=0",
        ],
    ),
}


@pytest.mark.timeout(300)
@pytest.mark.parametrize("name", sorted(CASES))
def test_a_cell_reproduces_the_committed_table(name: str, one_thread: None) -> None:
    scenario_file, table, overrides = CASES[name]
    folder = EXPERIMENTS / name
    scenario = load_scenario(folder / scenario_file, overrides)
    cid = cell_id(scenario)
    with (folder / table).open() as fh:
        rows = {row["cell"]: row for row in csv.DictReader(fh)}
    assert cid in rows, f"{name}: the table has no row for this cell; re-run its command"
    row = rows[cid]
    got = execute_cell({"id": cid, "scenario": scenario.to_dict(), "base_dir": scenario.base_dir})
    assert got["status"] == row["status"] == "ok", got.get("error")
    for key in ("honest_accuracy_mean", "honest_accuracy_min"):
        assert got[key] == pytest.approx(float(row[key]), abs=ONE_SAMPLE), key
    if row.get("epsilon"):
        assert got["epsilon"] == pytest.approx(float(row["epsilon"]), rel=1e-5)


@pytest.mark.timeout(300)
def test_the_compression_experiment_reproduces_a_committed_cell(one_thread: None) -> None:
    import importlib.util

    folder = EXPERIMENTS / "compression"
    spec = importlib.util.spec_from_file_location("compression_run", folder / "run.py")
    assert spec is not None and spec.loader is not None
    run = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(run)
    label, scheme, overrides = next(c for c in run.CONFIGS if c[:2] == ("top_k 1%", "choco"))

    got = run.run_cell((label, scheme, overrides, "median", "sign_flip"))

    with (folder / "results.csv").open() as fh:
        (row,) = [
            r
            for r in csv.DictReader(fh)
            if (r["operator"], r["scheme"], r["rule"], r["attack"])
            == (label, scheme, "median", "sign_flip")
        ]
    assert abs(got["honest_accuracy_mean"] - float(row["honest_accuracy_mean"])) <= ONE_SAMPLE
    assert got["bytes_sent_per_node_per_round"] == float(row["bytes_sent_per_node_per_round"])
