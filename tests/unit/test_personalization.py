"""Local test splits and personalization (``[evaluation]``), in the simulator and the node."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_node import assert_parity, experiment, run_all

from p2pfl.config import load_scenario
from p2pfl.errors import ConfigError
from p2pfl.experiment import build_experiment
from p2pfl.learning import evaluate
from p2pfl.personalization import draw_local_tests, local_score
from p2pfl.sim import Simulation
from p2pfl.sim.outputs import sim_records, sim_summary

pytestmark = pytest.mark.timeout(60)


def test_personalizing_needs_a_local_test_split_and_a_count() -> None:
    with pytest.raises(ConfigError, match=r"evaluation\.personalize_steps: .*local_test = true"):
        load_scenario(None, ["evaluation.personalize_steps=5"])
    with pytest.raises(ConfigError, match=r"evaluation\.personalize_steps: must be >= 0"):
        load_scenario(None, ["evaluation.local_test=true", "evaluation.personalize_steps=-1"])
    with pytest.raises(ConfigError, match=r"evaluation\.personalize_lr: must be >= 0"):
        load_scenario(None, ["evaluation.local_test=true", "evaluation.personalize_lr=-0.1"])
    with pytest.raises(ConfigError, match=r"evaluation\.local_tst: unknown key"):
        load_scenario(None, ["evaluation.local_tst=true"])


def test_local_tests_follow_each_nodes_training_labels() -> None:
    test_y = torch.arange(10).repeat(20)  # 20 test examples per class
    test_x = test_y.to(torch.float32).reshape(-1, 1)
    train = [np.array([3, 3, 3]), np.array([1, 2, 1, 2, 1, 2, 1, 2]), np.arange(10)]

    tests = draw_local_tests(train, 10, test_x, test_y, size=30, seed=7)

    assert tests.sizes.tolist() == [20, 30, 30]  # node 0 has only class 3's 20 examples
    for k, own in enumerate(train):  # stratified: the split has the shard's label mix
        got = torch.bincount(tests.y[k][tests.mask[k]], minlength=10).numpy()
        want = np.bincount(own, minlength=10) / len(own) * int(tests.sizes[k])
        assert np.abs(got - want).max() < 1.0
    for k in range(3):  # x belongs to y
        rows = tests.x[k][tests.mask[k]].reshape(-1)
        assert torch.equal(rows, tests.y[k][tests.mask[k]].to(torch.float32))
    again = draw_local_tests(train, 10, test_x, test_y, size=30, seed=7)
    assert torch.equal(again.y, tests.y)


def test_a_dominant_class_bounds_the_split_instead_of_skewing_it() -> None:
    test_y = torch.tensor([7] * 36 + [9] * 40)
    tests = draw_local_tests(
        [np.array([7] * 53 + [9])], 10, test_y.reshape(-1, 1).float(), test_y, 100, 0
    )
    assert torch.bincount(tests.y[0][tests.mask[0]], minlength=10)[[7, 9]].tolist() == [35, 1]


def test_local_score_is_each_nodes_accuracy_on_its_own_split() -> None:
    exp = build_experiment(load_scenario(None, ["evaluation.local_test=true", "topology.n=6"]))
    assert exp.local_tests is not None
    params = exp.initial.reshape(1, -1).repeat(6, 1) + 0.3 * torch.randn(6, exp.initial.numel())

    acc = local_score(exp.fmodel, params, exp.local_tests, 10)

    for k in range(6):
        keep = exp.local_tests.mask[k]
        want, _ = evaluate(
            exp.fmodel, params[k : k + 1], exp.local_tests.x[k][keep], exp.local_tests.y[k][keep]
        )
        assert float(acc[k]) == pytest.approx(float(want[0]), abs=1e-6)


def test_fine_tuning_on_skewed_shards_beats_the_shared_model_on_local_tests() -> None:
    scenario = load_scenario(
        None,
        [
            "data.partition=dirichlet",
            "data.partition_params.alpha=0.1",
            "evaluation.local_test=true",
            "evaluation.personalize_steps=20",
            "byzantine.count=0",
            "aggregator.name=mean",
            "aggregator.f=0",
            "topology.n=8",
            "run.rounds=6",
        ],
    )
    result = Simulation(build_experiment(scenario)).run()
    summary = sim_summary(result)

    assert summary["personalized_accuracy_mean"] > summary["local_accuracy_mean"] + 0.05
    for key in ("honest_accuracy_p10", "local_accuracy_p10", "personalized_accuracy_std"):
        assert key in summary
    final = [r for r in sim_records(result) if r["round"] == 6]
    earlier = [r for r in sim_records(result) if r["round"] < 6]
    assert all("personalized_accuracy" in r and "local_accuracy" in r for r in final)
    assert all("personalized_accuracy" not in r and "local_accuracy" in r for r in earlier)


async def test_nodes_report_the_simulators_local_and_personalized_accuracy() -> None:
    exp = experiment(
        "byzantine.count=1",
        "aggregator.name=median",
        "data.partition=dirichlet",
        "data.partition_params.alpha=0.3",
        "evaluation.local_test=true",
        "evaluation.personalize_steps=7",
        "evaluation.personalize_lr=0.05",
    )
    sim = Simulation(exp).run()

    results = await run_all(exp)

    assert_parity(exp, results)
    for m in sim.history:
        for i in range(exp.n):
            (rec,) = [e for e in results[i].evaluations if e["round"] == m.round]
            assert m.local_accuracy is not None
            assert rec["local_accuracy"] == pytest.approx(float(m.local_accuracy[i]), abs=1e-6)
            if m.personalized_accuracy is not None:
                got = rec["personalized_accuracy"]
                assert got == pytest.approx(float(m.personalized_accuracy[i]), abs=1e-6)
            else:
                assert "personalized_accuracy" not in rec
    assert sim.final.personalized_accuracy is not None
