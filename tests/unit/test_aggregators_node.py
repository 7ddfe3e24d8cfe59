"""Node-level rules: Neighbourhood, the registries and make_aggregator."""

from __future__ import annotations

import doctest
import importlib

import pytest
import torch

import p2pfl.aggregators as agg
from p2pfl.aggregators import (
    AGGREGATORS,
    PRE_AGGREGATORS,
    Aggregator,
    Neighbourhood,
    adaptive_radius,
    make_aggregator,
)
from p2pfl.errors import ConfigError, UnknownNameError

pytestmark = pytest.mark.timeout(60)


def hood(b: int = 3, m: int = 8, d: int = 12, f: int = 1, seed: int = 0) -> Neighbourhood:
    g = torch.Generator().manual_seed(seed)
    w = torch.rand(b, m + 1, generator=g)
    return Neighbourhood(
        own=torch.randn(b, d, generator=g),
        received=torch.randn(b, m, d, generator=g),
        weights=w / w.sum(1, keepdim=True),
        f=f,
    )


def test_public_api_is_exactly_all() -> None:
    public = {n for n in dir(agg) if not n.startswith("_")}
    modules = {n for n in public if type(getattr(agg, n)).__name__ == "module"}
    assert public - modules == set(agg.__all__)
    for name in agg.__all__:
        assert getattr(agg, name) is not None


def test_registry_names() -> None:
    assert AGGREGATORS.names() == sorted(
        [
            "mean",
            "gossip",
            "median",
            "trimmed_mean",
            "krum",
            "multi_krum",
            "geometric_median",
            "centered_clip",
            "bulyan",
            "clipped_gossip",
        ]
    )
    assert PRE_AGGREGATORS.names() == ["nnm"]
    for name in AGGREGATORS:
        assert AGGREGATORS[name].summary


@pytest.mark.parametrize("name", sorted(AGGREGATORS.names()))
def test_every_rule_runs_batched_and_matches_per_node(name: str) -> None:
    h = hood()
    rule = make_aggregator(name)
    out = rule(h)
    assert out.shape == (3, 12)
    assert out.dtype == torch.float32
    for i in range(3):
        single = Neighbourhood(h.own[i : i + 1], h.received[i : i + 1], h.weights[i : i + 1], h.f)
        torch.testing.assert_close(rule(single)[0], out[i], rtol=1e-5, atol=1e-6)


def test_rules_apply_the_pure_functions_to_own_and_received() -> None:
    h = hood(f=2)
    x = h.stacked()
    assert torch.equal(x[:, 0], h.own) and torch.equal(x[:, 1:], h.received)
    torch.testing.assert_close(make_aggregator("mean")(h), x.mean(1))
    gossip = (h.weights.unsqueeze(-1) * x).sum(1)
    torch.testing.assert_close(make_aggregator("gossip")(h), gossip)
    torch.testing.assert_close(make_aggregator("median")(h), agg.median(x))
    torch.testing.assert_close(make_aggregator("trimmed_mean")(h), agg.trimmed_mean(x, 2))
    torch.testing.assert_close(make_aggregator("krum")(h), agg.krum(x, 2))
    # multi_krum averages n - f by default
    torch.testing.assert_close(make_aggregator("multi_krum")(h), agg.multi_krum(x, 2, 7))
    torch.testing.assert_close(make_aggregator("multi_krum", {"m": 3})(h), agg.multi_krum(x, 2, 3))
    torch.testing.assert_close(
        make_aggregator("geometric_median", {"max_iter": 7})(h),
        agg.geometric_median(x, max_iter=7),
    )
    hb = hood(m=10, f=2)
    torch.testing.assert_close(make_aggregator("bulyan", {})(hb), agg.bulyan(hb.stacked(), 2))
    torch.testing.assert_close(
        make_aggregator("centered_clip", {"tau": 0.5, "iters": 2})(h),
        agg.centered_clip(x, h.own, 0.5, 2),
    )


def test_clipped_gossip_rule_fixed_and_adaptive() -> None:
    h = hood(f=2)
    nbr_w = h.weights[:, 1:]
    fixed = make_aggregator("clipped_gossip", {"tau": 0.3})(h)
    torch.testing.assert_close(fixed, agg.clipped_gossip(h.own, h.received, nbr_w, 0.3))
    radius = adaptive_radius(h.own, h.received, nbr_w, 2)
    adaptive = make_aggregator("clipped_gossip")(h)
    torch.testing.assert_close(adaptive, agg.clipped_gossip(h.own, h.received, nbr_w, radius))
    # no Byzantine neighbour to fear: nothing is clipped, plain gossip
    h0 = hood(f=0)
    torch.testing.assert_close(make_aggregator("clipped_gossip")(h0), make_aggregator("gossip")(h0))


def test_pre_aggregation_runs_first() -> None:
    h = hood(m=8, f=2)
    mixed = agg.nnm(h.stacked(), 2)
    out = make_aggregator("median", pre=["nnm"])(h)
    torch.testing.assert_close(out, agg.median(mixed))
    cc = make_aggregator("centered_clip", {"tau": 0.2}, pre=("nnm",))(h)
    torch.testing.assert_close(cc, agg.centered_clip(mixed, mixed[:, 0], 0.2, 1))


def test_min_inputs() -> None:
    expected = {
        "mean": 1,
        "gossip": 1,
        "centered_clip": 1,
        "clipped_gossip": 1,
        "median": 5,
        "trimmed_mean": 5,
        "geometric_median": 5,
        "krum": 7,
        "multi_krum": 7,
        "bulyan": 11,
    }
    for name, need in expected.items():
        assert make_aggregator(name).min_inputs(2) == need, name
    assert make_aggregator("multi_krum", {"m": 9}).min_inputs(2) == 9
    assert make_aggregator("mean", pre=["nnm"]).min_inputs(2) == 5
    assert make_aggregator("krum", pre=["nnm"]).min_inputs(2) == 7


def test_too_few_inputs_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"'krum' needs at least 7 vectors .* f=2, got 5"):
        make_aggregator("krum")(hood(m=4, f=2))
    with pytest.raises(ValueError, match=r"'median' needs at least 5 .* got 4"):
        make_aggregator("median")(hood(m=3, f=2))


def test_unknown_names_list_the_valid_ones() -> None:
    with pytest.raises(
        UnknownNameError, match=r"unknown aggregator 'medain'; valid aggregators: .*median"
    ):
        make_aggregator("medain")
    with pytest.raises(
        UnknownNameError, match=r"unknown pre-aggregator 'nmm'; valid pre-aggregators: nnm"
    ):
        make_aggregator("median", pre=["nmm"])
    with pytest.raises(ConfigError, match="expected a list of names"):
        make_aggregator("median", pre="nnm")


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        (
            "centered_clip",
            {"tua": 1.0},
            r"aggregator.params.tua: unknown parameter; valid parameters: iters, tau",
        ),
        ("median", {"f": 1}, r"aggregator.params.f: unknown parameter; valid parameters: \(none\)"),
        ("centered_clip", {"tau": "big"}, r"aggregator.params.tau: expected a number"),
        ("centered_clip", {"iters": 1.5}, r"aggregator.params.iters: expected an integer"),
        ("centered_clip", {"tau": -1}, r"aggregator.params.tau: must be finite and > 0"),
        ("centered_clip", {"iters": 0}, r"aggregator.params.iters: must be >= 1"),
        ("multi_krum", {"m": 0}, r"aggregator.params.m: must be >= 1"),
        ("geometric_median", {"nu": 0}, r"aggregator.params.nu: must be finite and > 0"),
        ("geometric_median", {"tol": -1.0}, r"aggregator.params.tol: must be finite and >= 0"),
        ("geometric_median", {"max_iter": 0}, r"aggregator.params.max_iter: must be >= 1"),
        ("clipped_gossip", {"tau": 0.0}, r"aggregator.params.tau: must be finite and > 0"),
    ],
)
def test_bad_parameters_are_config_errors(name: str, params: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        make_aggregator(name, params)


def test_parameters_are_coerced_and_frozen() -> None:
    a = make_aggregator("centered_clip", {"tau": 2, "iters": 3})
    assert isinstance(a, Aggregator)
    assert a.parameters == {"tau": 2.0, "iters": 3}
    assert isinstance(a.parameters["tau"], float)
    assert a.name == "centered_clip"
    assert hash(a) == hash(make_aggregator("centered_clip", {"iters": 3, "tau": 2.0}))
    with pytest.raises(AttributeError):
        a.name = "mean"  # type: ignore[misc]
    assert make_aggregator("clipped_gossip", {"tau": None}).parameters == {"tau": None}


def test_neighbourhood_validation() -> None:
    own, rec, w = torch.zeros(2, 3), torch.zeros(2, 4, 3), torch.zeros(2, 5)
    Neighbourhood(own, rec, w, 0)
    with pytest.raises(ValueError, match=r"own: expected shape \(b, d\)"):
        Neighbourhood(torch.zeros(3), rec, w, 0)
    with pytest.raises(ValueError, match=r"received: expected shape \(2, m, 3\)"):
        Neighbourhood(own, torch.zeros(2, 4, 5), w, 0)
    with pytest.raises(ValueError, match=r"weights: expected shape \(2, 5\)"):
        Neighbourhood(own, rec, torch.zeros(2, 4), 0)
    with pytest.raises(ValueError, match="f: expected an integer >= 0"):
        Neighbourhood(own, rec, w, -1)
    with pytest.raises(ValueError, match="f: expected an integer >= 0"):
        Neighbourhood(own, rec, w, True)
    with pytest.raises(ValueError, match=r"expected a torch\.Tensor"):
        Neighbourhood(own, [[0.0]], w, 0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="expected a float tensor"):
        Neighbourhood(own.long(), rec, w, 0)
    with pytest.raises(ValueError, match=r"dtype torch\.float64 differs"):
        Neighbourhood(own, rec.double(), w, 0)
    assert Neighbourhood(own, rec, w, 0).n == 5


def test_neighbourhood_of_stacked_vectors_shares_them() -> None:
    vectors, w = torch.randn(2, 5, 3), torch.full((2, 5), 0.2)
    hood = Neighbourhood.of_stacked(vectors, w, 1)
    assert hood.stacked() is vectors
    assert torch.equal(hood.own, vectors[:, 0]) and torch.equal(hood.received, vectors[:, 1:])
    assert hood.n == 5 and hood.f == 1
    separate = Neighbourhood(vectors[:, 0], vectors[:, 1:], w, 1)
    assert torch.equal(separate.stacked(), vectors) and separate.stacked() is not vectors
    assert torch.equal(make_aggregator("median", {})(hood), agg.median(vectors))
    for bad in (torch.zeros(5, 3), torch.zeros(2, 0, 3)):
        with pytest.raises(ValueError, match=r"of_stacked: expected shape \(b, m \+ 1, d\)"):
            Neighbourhood.of_stacked(bad, w, 0)


@pytest.mark.parametrize(
    "module",
    [
        "mean",
        "median",
        "trimmed_mean",
        "krum",
        "bulyan",
        "geometric_median",
        "centered_clip",
        "nnm",
        "clipped_gossip",
        "catalog",
    ],
)
def test_docstring_examples_run(module: str) -> None:
    mod = importlib.import_module(f"p2pfl.aggregators.{module}")
    result = doctest.testmod(mod, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0
    assert result.failed == 0
