"""Issue #2 acceptance: sign flip breaks the mean; median, trimmed mean and Krum survive.

A complete graph on 10 nodes with a fixed Byzantine set {0, 1, 2}: every honest node
receives all 9 other vectors, 3 of them Byzantine, so with ``f = 3`` each honest
node's assumption holds exactly (trimmed mean needs > 6 inputs, Krum >= 9; each has
10). The Byzantine nodes send the negation of their trained model.
"""

from __future__ import annotations

import pytest

from p2pfl.config import load_scenario
from p2pfl.sim import simulate

SCENARIO = [
    "run.rounds=20",
    "run.eval_every=10",
    "model.params.hidden=[32]",
    "topology.kind=complete",
    "topology.n=10",
    "topology.params={}",
    "byzantine.nodes=[0, 1, 2]",
    "byzantine.attack=sign_flip",
    "aggregator.f=3",
]


def honest_accuracy(rule: str) -> tuple[float, float]:
    result = simulate(load_scenario(None, [*SCENARIO, f"aggregator.name={rule}"]))
    acc = result.final.honest_accuracy
    assert acc.numel() == 7
    return float(acc.mean()), float(acc.min())


@pytest.mark.timeout(120)
def test_sign_flip_defeats_the_mean() -> None:
    mean_acc, _ = honest_accuracy("mean")
    assert mean_acc <= 0.5


@pytest.mark.timeout(120)
@pytest.mark.parametrize("rule", ["median", "trimmed_mean", "krum"])
def test_robust_rules_keep_honest_accuracy(rule: str) -> None:
    mean_acc, worst = honest_accuracy(rule)
    assert mean_acc >= 0.85
    assert worst >= 0.8
