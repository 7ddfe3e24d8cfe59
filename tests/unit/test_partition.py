"""Partitioners: disjoint, covering, non-empty, deterministic; label skew; overlap mode."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pfl.data import PARTITIONERS, heterogeneity
from p2pfl.data.partition import dirichlet, iid, shards
from p2pfl.errors import ConfigError, DataError, UnknownNameError

pytestmark = pytest.mark.timeout(60)

Part = Callable[..., list[np.ndarray]]
ALL: list[tuple[str, Part]] = [("iid", iid), ("dirichlet", dirichlet), ("shards", shards)]


def labels(n: int = 600, classes: int = 10, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, classes, size=n)


def assert_valid(parts: list[np.ndarray], n_samples: int, n_nodes: int) -> None:
    assert len(parts) == n_nodes
    assert all(p.dtype == np.int64 and p.ndim == 1 and p.size > 0 for p in parts)
    flat = np.concatenate(parts)
    assert flat.size == n_samples, "parts overlap or miss examples"
    assert np.array_equal(np.sort(flat), np.arange(n_samples))


def test_registry() -> None:
    assert PARTITIONERS.names() == ["dirichlet", "iid", "shards"]
    with pytest.raises(UnknownNameError, match="valid partitioners"):
        PARTITIONERS["pathological"]
    with pytest.raises(ConfigError, match="alpa: unknown parameter"):
        PARTITIONERS.bind("dirichlet", {"alpa": 0.1}, "data.partition_params")


@pytest.mark.parametrize(("name", "fn"), ALL)
@pytest.mark.parametrize("n_nodes", [1, 7, 50])
def test_disjoint_covering_non_empty(name: str, fn: Part, n_nodes: int) -> None:
    lab = labels()
    assert_valid(fn(lab, n_nodes, seed=3), lab.size, n_nodes)


@pytest.mark.parametrize(("name", "fn"), ALL)
def test_deterministic_by_seed(name: str, fn: Part) -> None:
    lab = labels()
    a, b, c = fn(lab, 8, seed=1), fn(lab, 8, seed=1), fn(lab, 8, seed=2)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c, strict=True))


def test_iid_sizes_differ_by_at_most_one() -> None:
    sizes = [p.size for p in iid(labels(601), 10, seed=0)]
    assert max(sizes) - min(sizes) <= 1 and sum(sizes) == 601


def test_dirichlet_heterogeneity_decreases_with_alpha() -> None:
    lab = labels(2000)

    def skew(alpha: float) -> float:
        return float(
            np.mean(
                [heterogeneity(lab, dirichlet(lab, 20, seed=s, alpha=alpha), 10) for s in range(3)]
            )
        )

    values = [skew(a) for a in (0.05, 0.5, 5.0, 500.0)]
    assert values == sorted(values, reverse=True), values
    assert values[0] > 0.6 and values[-1] < 0.1


def test_dirichlet_min_size_is_respected() -> None:
    parts = dirichlet(labels(), 10, seed=0, alpha=0.5, min_size=20)
    assert min(p.size for p in parts) >= 20


def test_dirichlet_gives_up_with_a_clear_error() -> None:
    with pytest.raises(DataError, match=r"after 3 draws with alpha=0.01, \d+ of 200 nodes"):
        dirichlet(labels(), 200, seed=0, alpha=0.01, max_tries=3)


def test_dirichlet_repair_fills_short_nodes() -> None:
    lab = labels()
    parts = dirichlet(lab, 200, seed=0, alpha=0.01, max_tries=3, repair=True, min_size=2)
    assert_valid(parts, lab.size, 200)
    assert min(p.size for p in parts) >= 2
    assert heterogeneity(lab, parts, 10) > 0.5  # still strongly skewed


@pytest.mark.parametrize("k", [1, 2, 3])
def test_shards_have_at_most_k_classes(k: int) -> None:
    lab = labels(1000)
    parts = shards(lab, 25, seed=0, shards_per_node=k)
    assert_valid(parts, lab.size, 25)
    assert max(np.unique(lab[p]).size for p in parts) <= k
    assert heterogeneity(lab, parts, 10) > heterogeneity(lab, iid(lab, 25, seed=0), 10)


def test_shards_with_fewer_shards_than_classes_still_cover() -> None:
    lab = labels(100)
    parts = shards(lab, 2, seed=0, shards_per_node=2)  # 4 shards, 10 classes
    assert_valid(parts, lab.size, 2)


def test_shards_skewed_classes() -> None:
    lab = np.array([0] * 95 + [1] * 3 + [2] * 2)
    parts = shards(lab, 10, seed=0, shards_per_node=1)
    assert_valid(parts, lab.size, 10)
    assert all(np.unique(lab[p]).size == 1 for p in parts)


@pytest.mark.parametrize(("name", "fn"), ALL)
def test_too_few_samples_is_a_clear_error(name: str, fn: Part) -> None:
    with pytest.raises(DataError, match=r"cannot give 20 nodes .*allow_overlap = true"):
        fn(labels(10), 20, seed=0)


@pytest.mark.parametrize(("name", "fn"), ALL)
def test_no_samples_at_all(name: str, fn: Part) -> None:
    with pytest.raises(DataError, match="0 training example"):
        fn(np.zeros(0, dtype=np.int64), 2)


@pytest.mark.parametrize(("name", "fn"), ALL)
def test_overlap_mode(name: str, fn: Part) -> None:
    lab = labels(100)
    extra = {"repair": True} if name == "dirichlet" else {}  # ~1.3 examples per node
    parts = fn(lab, 150, seed=0, allow_overlap=True, **extra)
    assert len(parts) == 150 and all(p.size > 0 for p in parts)
    assert all(np.unique(p).size == p.size for p in parts)  # no repeats within a node
    groups = 2 if name != "shards" else 3  # shards need 2 examples per node
    counts = np.bincount(np.concatenate(parts), minlength=100)
    assert counts.tolist() == [groups] * 100  # each example once per group
    for g in range(groups):  # each group is a disjoint, covering partition
        assert np.array_equal(np.sort(np.concatenate(parts[g::groups])), np.arange(100))


def test_overlap_copies_gives_more_per_node() -> None:
    lab = labels(1437)
    parts = iid(lab, 2048, seed=0, allow_overlap=True, copies=8)
    sizes = [p.size for p in parts]
    assert min(sizes) >= 5 and max(sizes) <= 6
    assert not set(parts[0]) & set(parts[1])  # neighbours are in different groups


def test_overlap_has_no_effect_when_data_suffices() -> None:
    lab = labels()
    a = iid(lab, 10, seed=0, allow_overlap=True)
    b = iid(lab, 10, seed=0)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


def test_overlap_parameter_errors() -> None:
    with pytest.raises(ConfigError, match="needs allow_overlap = true"):
        iid(labels(), 10, copies=2)
    with pytest.raises(ConfigError, match="copies: must be >= 0"):
        iid(labels(), 10, copies=-1)
    with pytest.raises(DataError, match="copies = 2 is too few"):
        iid(labels(10), 30, allow_overlap=True, copies=2)


@pytest.mark.parametrize(
    ("fn", "params", "match"),
    [
        (dirichlet, {"alpha": 0.0}, "alpha"),
        (dirichlet, {"alpha": float("nan")}, "alpha"),
        (dirichlet, {"min_size": 0}, "min_size"),
        (dirichlet, {"max_tries": 0}, "max_tries"),
        (shards, {"shards_per_node": 0}, "shards_per_node"),
    ],
)
def test_parameter_validation(fn: Part, params: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        fn(labels(), 4, **params)


@pytest.mark.parametrize(
    ("lab", "n", "exc", "match"),
    [
        (np.zeros((3, 2), dtype=int), 2, DataError, "1-D integer"),
        (np.array([0.5, 1.0]), 2, DataError, "1-D integer"),
        (np.array([0, -1, 1]), 2, DataError, "non-negative"),
        (np.array([0, 1, 1]), 0, ConfigError, "n_nodes"),
        (np.array([0, 1, 1]), True, ConfigError, "n_nodes"),
    ],
)
def test_input_validation(lab: np.ndarray, n: int, exc: type[Exception], match: str) -> None:
    with pytest.raises(exc, match=match):
        iid(lab, n)


def test_2048_nodes_on_digits_sized_data() -> None:
    lab = labels(1437)
    for fn in (iid, shards):
        parts = fn(lab, 2048, seed=0, allow_overlap=True)
        assert len(parts) == 2048 and min(p.size for p in parts) >= 1
    parts = dirichlet(lab, 2048, seed=0, allow_overlap=True, repair=True, max_tries=2)
    assert len(parts) == 2048 and min(p.size for p in parts) >= 1


@settings(max_examples=40, deadline=None)
@given(
    n_samples=st.integers(1, 300),
    classes=st.integers(1, 12),
    n_nodes=st.integers(1, 40),
    which=st.sampled_from(["iid", "shards", "dirichlet"]),
    seed=st.integers(0, 2**31),
)
def test_property_valid_or_clear_error(
    n_samples: int, classes: int, n_nodes: int, which: str, seed: int
) -> None:
    lab = labels(n_samples, classes, seed % 1000)
    fn = dict(ALL)[which]
    extra = {"repair": True, "max_tries": 2} if which == "dirichlet" else {}
    need = 2 if which == "shards" else 1
    if n_samples < n_nodes * need:
        with pytest.raises(DataError):
            fn(lab, n_nodes, seed=seed, **extra)
        return
    assert_valid(fn(lab, n_nodes, seed=seed, **extra), n_samples, n_nodes)
