"""Properties of the aggregation rules on generated inputs.

Permutation invariance for every rule (the selection rules up to ties in their
scores), the honest-range guarantees of median and trimmed mean, Krum's choice
of an honest input, the geometric median's bounded distance to the honest ball,
and the clipping rules' bounded moves.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from p2pfl.aggregators import (
    bulyan,
    centered_clip,
    clipped_gossip,
    geometric_median,
    krum,
    mean,
    median,
    multi_krum,
    nnm,
    trimmed_mean,
)

pytestmark = pytest.mark.timeout(180)

SETTINGS = settings(max_examples=40, deadline=None)

values = st.floats(-100.0, 100.0, allow_nan=False, width=32)
far = st.floats(1e4, 1e6, width=32)


@st.composite
def stacks(draw: st.DrawFn, min_n: int = 1, max_n: int = 9) -> torch.Tensor:
    """An (n, d) float32 stack of arbitrary small values (ties welcome)."""
    n = draw(st.integers(min_n, max_n))
    d = draw(st.integers(1, 6))
    return torch.from_numpy(draw(hnp.arrays(np.float32, (n, d), elements=values)))


def permutation(draw: Callable[..., Any], n: int) -> torch.Tensor:
    return torch.tensor(draw(st.permutations(list(range(n)))), dtype=torch.int64)


def gaussian(seed: int, *shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def krum_scores64(x: torch.Tensor, f: int) -> torch.Tensor:
    xd = x.double()
    sq = torch.cdist(xd, xd, compute_mode="donot_use_mm_for_euclid_dist") ** 2
    sq.fill_diagonal_(math.inf)
    k = x.shape[0] - f - 2
    return sq.sort(dim=1).values[:, :k].sum(1)


def close(a: torch.Tensor, b: torch.Tensor, scale: float = 100.0) -> None:
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5 * scale)


# --- permutation invariance -----------------------------------------------------


@SETTINGS
@given(data=st.data(), x=stacks())
def test_coordinatewise_rules_are_permutation_invariant(
    data: st.DataObject, x: torch.Tensor
) -> None:
    n = x.shape[0]
    p = permutation(data.draw, n)
    f = data.draw(st.integers(0, (n - 1) // 2))
    assert torch.equal(median(x[p]), median(x))
    close(trimmed_mean(x[p], f), trimmed_mean(x, f))
    close(mean(x[p]), mean(x))
    w = torch.arange(1, n + 1, dtype=torch.float32)
    close(mean(x[p], w[p]), mean(x, w))
    center = x[0]
    close(centered_clip(x[p], center, 5.0, 2), centered_clip(x, center, 5.0, 2))
    close(
        clipped_gossip(center, x[p], w[p] / w.sum(), 5.0),
        clipped_gossip(center, x, w / w.sum(), 5.0),
    )


@SETTINGS
@given(data=st.data(), x=stacks())
def test_geometric_median_is_permutation_invariant(data: st.DataObject, x: torch.Tensor) -> None:
    p = permutation(data.draw, x.shape[0])
    a = geometric_median(x[p], tol=0.0, max_iter=30)
    b = geometric_median(x, tol=0.0, max_iter=30)
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-3)


@SETTINGS
@given(data=st.data(), x=stacks(min_n=3))
def test_krum_is_permutation_invariant_up_to_ties(data: st.DataObject, x: torch.Tensor) -> None:
    n = x.shape[0]
    f = data.draw(st.integers(0, (n - 3) // 2))
    p = permutation(data.draw, n)
    scores = krum_scores64(x, f)
    best = scores.min()
    for out in (krum(x, f), krum(x[p], f)):
        rows = (x == out).all(1).nonzero().flatten()
        assert rows.numel() > 0, "Krum must return one of its inputs"
        assert float(scores[rows].min()) <= float(best) * (1 + 1e-6) + 1e-6
    ordered = scores.sort().values
    if n > 1 and float(ordered[1] - ordered[0]) > 1e-3 * (1.0 + float(ordered[0])):
        assert torch.equal(krum(x[p], f), krum(x, f))


def lowest_is_unique(scores: torch.Tensor, m: int) -> bool:
    """The m lowest scores are separated from the rest (no tie decides the choice)."""
    if m >= scores.numel():
        return True
    v = scores.sort().values
    return float(v[m] - v[m - 1]) > 1e-6 * (1.0 + float(v[m].abs()))


def bulyan_picks_are_unique(x: torch.Tensor, f: int) -> bool:
    """Every Krum pick of Bulyan's selection phase has a unique lowest score."""
    xd = x.double()
    sq = torch.cdist(xd, xd, compute_mode="donot_use_mm_for_euclid_dist") ** 2
    remaining = list(range(x.shape[0]))
    for _ in range(x.shape[0] - 2 * f):
        k = max(len(remaining) - f - 2, 1)
        sub = sq[remaining][:, remaining].clone()
        sub.fill_diagonal_(math.inf)
        scores = sub.sort(dim=1).values[:, :k].sum(1)
        if not lowest_is_unique(scores, 1):
            return False
        remaining.pop(int(scores.argmin()))
    return True


@settings(max_examples=25, deadline=None)
@given(
    data=st.data(),
    seed=st.integers(0, 2**31 - 1),
    n=st.integers(3, 13),
    d=st.integers(1, 8),
)
def test_selection_rules_are_permutation_invariant_up_to_ties(
    data: st.DataObject, seed: int, n: int, d: int
) -> None:
    # Krum's scores tie more often than one might think: with one neighbour
    # (n - f - 2 = 1) the closest pair always ties. Ties are broken by input
    # order, so only tie-free cases must be invariant.
    x = gaussian(seed, n, d)
    p = permutation(data.draw, n)
    f = data.draw(st.integers(0, (n - 3) // 2))
    m = data.draw(st.integers(1, n))
    if lowest_is_unique(krum_scores64(x, f), m):
        close(multi_krum(x[p], f, m), multi_krum(x, f, m), scale=1.0)
    close(nnm(x[p], f), nnm(x, f)[p], scale=1.0)  # equivariant: rows follow the inputs
    if n >= 4 * f + 3 and bulyan_picks_are_unique(x, f):
        close(bulyan(x[p], f), bulyan(x, f), scale=1.0)


# --- robustness guarantees --------------------------------------------------------


@st.composite
def honest_and_outliers(
    draw: st.DrawFn, extra: int, bound: st.SearchStrategy[float] = values
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(honest (h, d), all n = h + f rows shuffled, f) with h >= f + extra."""
    f = draw(st.integers(0, 3))
    h = draw(st.integers(f + extra, f + extra + 4))
    d = draw(st.integers(1, 5))
    honest = draw(hnp.arrays(np.float32, (h, d), elements=bound))
    sign = draw(hnp.arrays(np.float32, (f, d), elements=st.sampled_from([-1.0, 1.0])))
    size = draw(hnp.arrays(np.float32, (f, d), elements=far))
    rows = np.concatenate([honest, sign * size])
    order = draw(st.permutations(list(range(h + f))))
    return torch.from_numpy(honest), torch.from_numpy(rows[order]), f


@SETTINGS
@given(case=honest_and_outliers(extra=1))
def test_median_and_trimmed_mean_stay_in_the_honest_range(
    case: tuple[torch.Tensor, torch.Tensor, int],
) -> None:
    honest, x, f = case
    lo, hi = honest.min(0).values, honest.max(0).values
    slack = 1e-5 * (1.0 + honest.abs().max())
    for out in (median(x), trimmed_mean(x, f)):
        assert bool((out >= lo - slack).all()) and bool((out <= hi + slack).all())


@SETTINGS
@given(case=honest_and_outliers(extra=3, bound=st.floats(-1.0, 1.0, width=32)))
def test_krum_returns_an_honest_input(case: tuple[torch.Tensor, torch.Tensor, int]) -> None:
    honest, x, f = case
    out = krum(x, f)
    assert bool((honest == out).all(1).any()), "Krum must return an honest input"
    h = honest.shape[0]
    mk = multi_krum(x, f, h)  # the h lowest scores are exactly the honest inputs
    close(mk, honest.mean(0), scale=1.0)


@SETTINGS
@given(case=honest_and_outliers(extra=1, bound=st.floats(-1.0, 1.0, width=32)))
def test_geometric_median_stays_near_the_honest_ball(
    case: tuple[torch.Tensor, torch.Tensor, int],
) -> None:
    honest, x, f = case
    n = x.shape[0]
    radius = float(torch.linalg.vector_norm(honest.double(), dim=1).max())
    # at the minimiser, the f outliers' unit pulls balance the n - f honest ones,
    # which forces ||z|| <= R / sqrt(1 - (f / (n - f))^2) for honest data in B(0, R)
    bound = radius / math.sqrt(1.0 - (f / (n - f)) ** 2)
    z = geometric_median(x, tol=1e-10, max_iter=2000)
    assert float(torch.linalg.vector_norm(z.double())) <= bound * 1.01 + 1e-3


@SETTINGS
@given(data=st.data(), x=stacks())
def test_centered_clip_moves_at_most_tau_per_iteration(
    data: st.DataObject, x: torch.Tensor
) -> None:
    d = x.shape[1]
    center = torch.from_numpy(data.draw(hnp.arrays(np.float32, (d,), elements=values)))
    tau = data.draw(st.floats(0.01, 50.0))
    iters = data.draw(st.integers(1, 4))
    v = center
    for _ in range(iters):
        nxt = centered_clip(x, v, tau, 1)
        rounding = 1e-6 * (1.0 + float(v.abs().max()))  # float32 result near |v|
        assert float(torch.linalg.vector_norm((nxt - v).double())) <= tau * (1 + 1e-5) + rounding
        v = nxt
    close(centered_clip(x, center, tau, iters), v)


@SETTINGS
@given(data=st.data(), x=stacks())
def test_clipped_gossip_moves_at_most_the_weighted_radius(
    data: st.DataObject, x: torch.Tensor
) -> None:
    own = x[0]
    nbrs = x[1:]
    m = nbrs.shape[0]
    w = torch.from_numpy(
        data.draw(hnp.arrays(np.float32, (m,), elements=st.floats(0.0, 1.0, width=32)))
    )
    tau = data.draw(st.floats(0.01, 50.0))
    out = clipped_gossip(own, nbrs, w, tau)
    moved = float(torch.linalg.vector_norm((out - own).double()))
    rounding = 1e-6 * (1.0 + float(own.abs().max()))  # float32 result near |own|
    assert moved <= tau * float(w.double().sum()) * (1 + 1e-5) + rounding


@SETTINGS
@given(x=stacks(max_n=20))
def test_median_equals_the_sorted_middle(x: torch.Tensor) -> None:
    n = x.shape[0]
    v = x.double().sort(0).values
    expected = (v[(n - 1) // 2] + v[n // 2]) / 2
    torch.testing.assert_close(median(x).double(), expected, rtol=1e-6, atol=1e-30)
