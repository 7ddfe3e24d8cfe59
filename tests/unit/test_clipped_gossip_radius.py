"""ClippedGossip's three radii: fixed (the paper's figures), adaptive (the released code),
theorem (the convergence theorem's, with the simulator's oracle)."""

from __future__ import annotations

import math

import pytest
import torch

from p2pfl.aggregators import (
    Neighbourhood,
    adaptive_radius,
    clipped_gossip,
    make_aggregator,
    theorem_radius,
)
from p2pfl.config import load_scenario
from p2pfl.errors import ConfigError
from p2pfl.sim import simulate

pytestmark = pytest.mark.timeout(120)


def reference_theorem_radius(own, nbrs, w, byz) -> float:  # type: ignore[no-untyped-def]
    """sqrt(sum_{j honest} W_ij ||x_j - x_i||^2 / sum_{j Byzantine} W_ij), in float64 loops."""
    honest = sum(
        float(w[j]) * float(((nbrs[j] - own).double() ** 2).sum())
        for j in range(len(w))
        if not byz[j]
    )
    delta = sum(float(w[j]) for j in range(len(w)) if byz[j])
    return math.inf if delta == 0 else math.sqrt(honest / delta)


def test_theorem_radius_matches_a_float64_reference() -> None:
    g = torch.Generator().manual_seed(0)
    own = torch.randn(50, generator=g)
    nbrs = torch.randn(6, 50, generator=g)
    w = torch.rand(6, generator=g) / 6
    byz = torch.tensor([False, True, False, False, True, False])
    got = float(theorem_radius(own, nbrs, w, byz))
    assert got == pytest.approx(reference_theorem_radius(own, nbrs, w, byz), rel=1e-6)
    batched = theorem_radius(
        own.expand(2, 50), nbrs.expand(2, 6, 50), w.expand(2, 6), byz.expand(2, 6)
    )
    assert batched.shape == (2,) and float(batched[1]) == pytest.approx(got)


def test_theorem_radius_without_byzantine_neighbours_does_not_clip() -> None:
    own = torch.zeros(3)
    nbrs = torch.tensor([[1.0, 0, 0], [0, 100.0, 0]])
    w = torch.tensor([0.25, 0.25])
    r = theorem_radius(own, nbrs, w, torch.tensor([False, False]))
    assert math.isinf(float(r))
    assert torch.allclose(clipped_gossip(own, nbrs, w, r), 0.25 * nbrs.sum(0))
    assert float(theorem_radius(own, nbrs, w, torch.tensor([True, True]))) == 0.0


def test_adaptive_radius_is_the_released_codes_second_largest_distance() -> None:
    """SelfCenteredClipping(tau=None): tau = sorted(distances)[-2] (f = 1, uniform weights)."""
    g = torch.Generator().manual_seed(1)
    own = torch.randn(20, generator=g)
    nbrs = torch.randn(5, 20, generator=g) * torch.arange(1, 6).reshape(5, 1)
    dist = sorted(float(torch.linalg.vector_norm(x - own)) for x in nbrs)
    r = adaptive_radius(own, nbrs, torch.full((5,), 0.2), 1)
    assert float(r) == pytest.approx(dist[-2], rel=1e-6)


def hood() -> Neighbourhood:
    own = torch.zeros(1, 2)
    received = torch.tensor([[[1.0, 0.0], [0.0, 3.0], [40.0, 0.0]]])
    weights = torch.tensor([[0.25, 0.25, 0.25, 0.25]])
    return Neighbourhood(
        own, received, weights, f=1, byzantine=torch.tensor([[False, False, True]])
    )


@pytest.mark.parametrize(
    ("params", "tau"),
    [
        ({"tau": 0.5}, 0.5),
        ({"radius": "fixed", "tau": 0.5}, 0.5),
        ({}, 3.0),  # adaptive: the second-largest distance
        ({"radius": "adaptive"}, 3.0),
        ({"radius": "theorem"}, math.sqrt((0.25 * 1 + 0.25 * 9) / 0.25)),
    ],
)
def test_rule_uses_the_named_radius(params: dict[str, object], tau: float) -> None:
    h = hood()
    agg = make_aggregator("clipped_gossip", params)
    expected = clipped_gossip(h.own, h.received, h.weights[:, 1:], torch.tensor([tau]))
    assert torch.allclose(agg(h), expected)
    assert agg.needs_oracle == (params.get("radius") == "theorem")


def test_theorem_radius_needs_the_simulators_oracle() -> None:
    h = hood()
    blind = Neighbourhood(h.own, h.received, h.weights, f=1)
    with pytest.raises(ValueError, match="radius 'theorem' needs to know which neighbours"):
        make_aggregator("clipped_gossip", {"radius": "theorem"})(blind)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"radius": "fixed"}, r"aggregator\.params\.radius: 'fixed' needs tau"),
        ({"radius": "adaptive", "tau": 1.0}, r"aggregator\.params\.tau: not used with radius"),
        (
            {"radius": "oracle"},
            r"aggregator\.params\.radius: expected one of 'fixed' \| 'adaptive'",
        ),
        ({"tau": -1.0}, r"aggregator\.params\.tau: must be finite and > 0"),
    ],
)
def test_radius_parameters_are_checked_once(params: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        make_aggregator("clipped_gossip", params)


def test_simulator_runs_the_theorem_radius() -> None:
    """The simulator fills in who is Byzantine; with no Byzantine neighbour it is gossip."""
    tiny = [
        "run.rounds=3",
        "run.eval_every=3",
        "topology.n=8",
        "model.params.hidden=[8]",
        "aggregator.f=0",
    ]
    theorem = simulate(load_scenario(None, [*tiny, "aggregator.name=clipped_gossip",
                                            "aggregator.params.radius=theorem"]))  # fmt: skip
    assert theorem.final.honest_accuracy.numel() == 5
    clean = [*tiny, "byzantine.count=0"]
    no_byz = simulate(load_scenario(None, [*clean, "aggregator.name=clipped_gossip",
                                           "aggregator.params.radius=theorem"]))  # fmt: skip
    gossip = simulate(load_scenario(None, [*clean, "aggregator.name=gossip"]))
    assert torch.allclose(no_byz.params, gossip.params, atol=1e-5)
