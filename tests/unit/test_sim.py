"""The vectorized simulator against a plain per-node reference, plus its checks."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from p2pfl.config import load_scenario
from p2pfl.errors import ConfigError
from p2pfl.experiment import build_experiment
from p2pfl.learning import local_steps
from p2pfl.rounds import attack_view, byzantine_state, craft_messages, hood_weights
from p2pfl.sim import Simulation, simulate

SMALL = [
    "topology.n=8",
    "byzantine.count=2",
    "run.rounds=3",
    "run.eval_every=1",
    "model.params.hidden=[16]",
    "training.local_steps=2",
]


def reference_round(exp, params: torch.Tensor, r: int) -> torch.Tensor:  # type: ignore[no-untyped-def]
    """One round computed node by node, the obvious way."""
    n = exp.n
    trained = torch.empty_like(params)
    for i in range(n):
        sel = torch.tensor([i])
        out, _, _ = local_steps(
            exp.fmodel, params[sel], None, exp.local.select(sel), sel, exp.training, exp.seed, r
        )
        trained[i] = out[0]
    sent: dict[tuple[int, int], torch.Tensor] = {}
    for b in exp.vector_attackers:
        targets = exp.neighbours(b)
        visible = [j for j in targets if j not in exp.byzantine]
        f = max(int(exp.f_per_node[i]) for i in targets)
        view = attack_view(
            b,
            lambda ids: trained[ids],
            visible,
            targets,
            exp.neighbours,
            exp.byzantine,
            exp.mixing,
            f,
            exp.seed,
            r,
        )
        crafted = craft_messages(exp.attack, view)
        for k, i in enumerate(targets):
            sent[(b, i)] = crafted[k]
    new = torch.empty_like(params)
    for i in range(n):
        nbrs = [j for j in exp.neighbours(i) if j not in exp.silent]
        if i not in exp.follows_protocol:
            honest = [j for j in exp.neighbours(i) if j not in exp.byzantine]
            new[i] = byzantine_state(trained[i], trained[honest])
            continue
        if not nbrs:  # every neighbour silent: nothing to combine
            new[i] = trained[i]
            continue
        received = torch.stack([sent.get((j, i), trained[j]) for j in nbrs])
        w = hood_weights(exp.mixing, i, nbrs)
        from p2pfl.aggregators import Neighbourhood

        hood = Neighbourhood(trained[i : i + 1], received[None], w[None], int(exp.f_per_node[i]))
        new[i] = exp.aggregator(hood)[0]
    return new


@pytest.mark.parametrize(
    "extra",
    [
        ["aggregator.name=median", "byzantine.attack=sign_flip"],
        ["aggregator.name=trimmed_mean", "byzantine.attack=alie"],
        ["aggregator.name=clipped_gossip", "byzantine.attack=dissensus"],
        ["aggregator.name=mean", "byzantine.attack=label_flip"],
        [
            "aggregator.name=gossip",
            "byzantine.attack=silent",
            "topology.kind=ring",
            "topology.params={}",
        ],
        [
            "aggregator.name=krum",
            "aggregator.f=0",
            "byzantine.attack=gaussian",
            "byzantine.params={sigma=1.0}",
        ],
    ],
)
def test_vectorized_round_equals_per_node_reference(extra: list[str]) -> None:
    exp = build_experiment(load_scenario(None, SMALL + extra))
    sim = Simulation(exp)
    start = sim.params.clone()
    sim.step()
    expected = reference_round(exp, start, 1)
    assert torch.allclose(sim.params, expected, rtol=1e-5, atol=1e-6)


def test_same_seed_same_numbers_and_seed_matters() -> None:
    a = simulate(load_scenario(None, SMALL))
    b = simulate(load_scenario(None, SMALL))
    c = simulate(load_scenario(None, [*SMALL, "run.seed=1"]))
    assert torch.equal(a.params, b.params)
    assert [m.accuracy.tolist() for m in a.history] == [m.accuracy.tolist() for m in b.history]
    assert not torch.equal(a.params, c.params)


def test_history_and_metrics_shapes() -> None:
    result = simulate(load_scenario(None, SMALL))
    assert [m.round for m in result.history] == [1, 2, 3]
    m = result.final
    assert m.accuracy.shape == (8,) and int(m.honest.sum()) == 6
    s = m.summary()
    assert (
        0.0
        <= s["honest_accuracy_min"]
        <= s["honest_accuracy_mean"]
        <= s["honest_accuracy_max"]
        <= 1
    )
    honest = result.params[m.honest]
    expected = ((honest - honest.mean(0)) ** 2).sum(1).mean()
    assert s["consensus_distance"] == pytest.approx(float(expected), rel=1e-5)


def test_no_byzantine_nodes_and_mean_is_gossip_like() -> None:
    result = simulate(load_scenario(None, [*SMALL, "byzantine.count=0", "aggregator.name=mean"]))
    assert bool(result.final.honest.all())


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["byzantine.count=9"], "byzantine.count: 9 Byzantine nodes but the topology has 8 nodes"),
        (["byzantine.count=8"], "at least one must be honest"),
        (
            ["aggregator.name=krum", "aggregator.f=1"],
            "aggregator.f: krum with f=1 needs at least 5",
        ),
        (["aggregator.name=medain"], "unknown aggregator 'medain'"),
        (["byzantine.attack=sign_flop"], "unknown attack 'sign_flop'"),
        (["byzantine.nodes=[0, 99]"], "byzantine.nodes: [99] are not nodes"),
        (["topology.kind=moebius"], "unknown topology 'moebius'"),
        (["aggregator.params={tau=1.0}"], "aggregator.params.tau: unknown parameter"),
    ],
)
def test_impossible_scenarios_are_config_errors(overrides: list[str], message: str) -> None:
    base = [*SMALL, "topology.params={degree=3}"]
    with pytest.raises(ConfigError) as info:
        build_experiment(load_scenario(None, base + overrides))
    assert message in str(info.value)


def test_run_with_callback_reports_every_round() -> None:
    seen: list[tuple[int, bool]] = []
    scenario = load_scenario(None, [*SMALL, "run.eval_every=2"])
    result = Simulation(build_experiment(scenario)).run(
        lambda r, m: seen.append((r, m is not None))
    )
    assert seen == [(1, False), (2, True), (3, True)]
    assert [m.round for m in result.history] == [2, 3]
    assert dataclasses.is_dataclass(result)
