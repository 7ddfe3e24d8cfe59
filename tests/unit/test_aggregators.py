"""The pure aggregation functions against independent float64 references.

References live in ``test_aggregators_reference.py`` (loops written from the
papers). Agreement is to 1e-5 relative; selections (Krum, Multi-Krum, Bulyan,
NNM) must be identical to the exact-arithmetic choice.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import test_aggregators_reference as ref
import torch

from p2pfl.aggregators import (
    _network,
    _pairwise,
    adaptive_radius,
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

pytestmark = pytest.mark.timeout(120)


def sample(
    seed: int,
    *shape: int,
    scale: float = 1.0,
    offset: float = 0.0,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(*shape, generator=g, dtype=torch.float64) * scale + offset).to(dtype)


def assert_close(got: torch.Tensor, expected: np.ndarray, scale: float = 1.0) -> None:
    np.testing.assert_allclose(
        got.double().numpy(), expected, rtol=1e-5, atol=1e-5 * scale, strict=True
    )


def np64(x: torch.Tensor) -> np.ndarray:
    return x.double().numpy()


# --- hand-worked cases ------------------------------------------------------------


def col(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32).reshape(-1, 1)


def test_median_hand_cases() -> None:
    assert median(col(1, 2, 3, 10)).item() == 2.5  # not torch.median's lower median 2
    assert median(col(3, 1, 2)).item() == 2.0
    assert median(col(7)).item() == 7.0
    assert median(col(4, -4)).item() == 0.0


def test_trimmed_mean_hand_cases() -> None:
    assert trimmed_mean(col(1, 2, 3, 100), 1).item() == 2.5
    assert trimmed_mean(col(-50, 1, 2, 3, 4, 100), 2).item() == 2.5
    assert trimmed_mean(col(1, 2, 6), 0).item() == 3.0


def test_krum_hand_case() -> None:
    # scores (n=5, f=1, 2 nearest): 0 -> 10, 1 -> 5, 3 -> 13, 7 -> 52, 100 -> 17858
    x = col(0, 1, 3, 7, 100)
    assert krum(x, 1).item() == 1.0
    assert multi_krum(x, 1, 2).item() == 0.5
    assert multi_krum(x, 1, 1).item() == 1.0


def test_krum_exact_tie_goes_to_lower_index() -> None:
    # 1 and -1 both score 8; the first of them in input order wins
    assert krum(col(1, -1, 3, -3, 10), 1).item() == 1.0
    assert krum(col(-1, 1, 3, -3, 10), 1).item() == -1.0


def test_bulyan_hand_case() -> None:
    # Krum picks 2, 3, 1, 4, 0; their median is 2 and the beta=3 closest are 1, 2, 3
    assert bulyan(col(0, 1, 2, 3, 4, 5, 100), 1).item() == 2.0


def test_nnm_hand_case() -> None:
    out = nnm(col(0, 1, 2, 100), 1)
    assert out.shape == (4, 1)
    assert out[:3, 0].tolist() == [1.0, 1.0, 1.0]
    assert out[3, 0].item() == pytest.approx(103 / 3)


def test_geometric_median_hand_cases() -> None:
    x = torch.tensor([[0.0, 0.0], [2.0, 0.0], [0.0, 2.0], [50.0, 50.0]])
    assert geometric_median(x, tol=0.0).tolist() == pytest.approx([1.0, 1.0], abs=1e-5)
    # in one dimension the geometric median is the median
    assert geometric_median(col(0, 1, 10), tol=0.0, max_iter=200).item() == pytest.approx(
        1.0, abs=1e-5
    )
    assert geometric_median(col(3)).item() == 3.0


def test_centered_clip_hand_case() -> None:
    x = torch.tensor([[1.0, 0.0], [1.0, 0.0], [100.0, 0.0]])
    out = centered_clip(x, torch.zeros(2), tau=3.0)
    assert out.tolist() == pytest.approx([5 / 3, 0.0])


def test_clipped_gossip_hand_case() -> None:
    own = torch.zeros(2)
    nbrs = torch.tensor([[1.0, 0.0], [0.0, 40.0]])
    out = clipped_gossip(own, nbrs, torch.tensor([0.5, 0.5]), tau=2.0)
    assert out.tolist() == [0.5, 1.0]
    w = torch.full((3,), 0.25)
    assert adaptive_radius(torch.zeros(1), col(1, 2, 9), w, 1).item() == 2.0
    assert adaptive_radius(torch.zeros(1), col(1, 2, 9), w, 0).item() == 9.0
    assert adaptive_radius(torch.zeros(1), col(1, 2, 9), w, 3).item() == 0.0
    # non-uniform weights: delta = .3 (the largest weight); the farthest neighbour
    # weighs only .2, so the two farthest are clipped, to the third distance
    w2 = torch.tensor([0.3, 0.1, 0.2])
    assert adaptive_radius(torch.zeros(1), col(1, 2, 9), w2, 1).item() == 1.0


def test_mean_hand_cases() -> None:
    x = col(0, 2, 10)
    assert mean(x).item() == 4.0
    assert mean(x, torch.tensor([1.0, 1.0, 0.0])).item() == 1.0
    assert mean(x, torch.tensor([2.0, 2.0, 0.0])).item() == 1.0  # normalised


# --- agreement with the references on random inputs ------------------------------

SIZES = [(1, 3), (2, 5), (3, 1), (4, 9), (5, 16), (8, 33), (9, 100), (16, 20), (33, 7)]


@pytest.mark.parametrize(("n", "d"), SIZES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_median_matches_reference(n: int, d: int, dtype: torch.dtype) -> None:
    x = sample(n * 100 + d, n, d, dtype=dtype)
    out = median(x)
    assert out.dtype == dtype
    assert_close(out, ref.median(np64(x)))


@pytest.mark.parametrize("n", range(1, 21))
def test_median_every_small_n(n: int) -> None:
    x = sample(n, n, 40)
    assert_close(median(x), ref.median(np64(x)))


@pytest.mark.parametrize(("n", "f"), [(3, 1), (4, 1), (7, 3), (10, 2), (20, 0), (21, 10), (50, 7)])
def test_trimmed_mean_matches_reference(n: int, f: int) -> None:
    x = sample(n + f, n, 30, scale=3.0)
    assert_close(trimmed_mean(x, f), ref.trimmed_mean(np64(x), f), scale=3.0)


def test_order_statistics_beyond_the_network_size() -> None:
    n = _network.NETWORK_MAX_N + 3
    x = sample(5, n, 12)
    assert_close(median(x), ref.median(np64(x)))
    assert_close(trimmed_mean(x, 20), ref.trimmed_mean(np64(x), 20))


@pytest.mark.parametrize(("b", "d"), [(5, 23), (2, 130), (1, 333)])
def test_order_statistics_over_many_blocks(monkeypatch: pytest.MonkeyPatch, b: int, d: int) -> None:
    # tiny blocks: several batch rows per block, ragged last blocks
    monkeypatch.setattr(_network, "BLOCK_ELEMS", 50)
    monkeypatch.setattr(_network, "MIN_BLOCK_ELEMS", 50)
    x = sample(b * d, b, 9, d)
    med, tm = median(x), trimmed_mean(x, 3)
    for i in range(b):
        assert_close(med[i], ref.median(np64(x[i])))
        assert_close(tm[i], ref.trimmed_mean(np64(x[i]), 3))


def test_order_statistics_beyond_the_network_size_batched() -> None:
    x = sample(6, 2, _network.NETWORK_MAX_N + 2, 5)
    out = median(x)
    for i in range(2):
        assert_close(out[i], ref.median(np64(x[i])))


def test_order_statistics_with_ties_and_huge_values() -> None:
    x = torch.tensor([[1.0, -3e30], [1.0, 2.0], [1.0, 3e30], [5.0, 2.0], [1.0, 1.0]])
    assert median(x).tolist() == [1.0, 2.0]
    assert trimmed_mean(x, 2).tolist() == [1.0, 2.0]


@pytest.mark.parametrize(
    ("n", "f", "d"), [(3, 0, 4), (5, 1, 8), (9, 3, 17), (12, 2, 50), (30, 8, 6)]
)
def test_krum_and_multi_krum_match_reference(n: int, f: int, d: int) -> None:
    x = sample(n * f + d, n, d)
    assert_close(krum(x, f), ref.krum(np64(x), f))
    for m in sorted({1, 2, n - f, n}):
        assert_close(multi_krum(x, f, m), ref.multi_krum(np64(x), f, m))


@pytest.mark.parametrize(("n", "f", "d"), [(3, 0, 5), (7, 1, 6), (11, 2, 9), (13, 2, 30)])
def test_bulyan_matches_reference(n: int, f: int, d: int) -> None:
    x = sample(n + 7 * f, n, d)
    assert_close(bulyan(x, f), ref.bulyan(np64(x), f))


@pytest.mark.parametrize(("n", "f", "d"), [(1, 0, 4), (3, 1, 5), (8, 3, 7), (15, 4, 12)])
def test_nnm_matches_reference(n: int, f: int, d: int) -> None:
    x = sample(n * d + f, n, d)
    out = nnm(x, f)
    assert out.shape == x.shape
    assert_close(out, ref.nnm(np64(x), f))


@pytest.mark.parametrize(("n", "d"), [(1, 3), (2, 4), (5, 8), (9, 20), (20, 3)])
@pytest.mark.parametrize("max_iter", [1, 5, 60])
def test_geometric_median_matches_reference(n: int, d: int, max_iter: int) -> None:
    x = sample(n + d, n, d, scale=2.0)
    out = geometric_median(x, nu=1e-6, tol=0.0, max_iter=max_iter)
    assert_close(out, ref.geometric_median(np64(x), 1e-6, 0.0, max_iter), scale=2.0)


def test_geometric_median_default_tolerance_matches_reference() -> None:
    x = sample(3, 11, 6)
    x[:3] += 40.0  # a minority of outliers: fast, well-conditioned convergence
    out = geometric_median(x)
    np.testing.assert_allclose(np64(out), ref.geometric_median(np64(x), 1e-6, 1e-7, 100), atol=1e-3)


@pytest.mark.parametrize(("tau", "iters"), [(0.1, 1), (1.0, 3), (100.0, 2)])
def test_centered_clip_matches_reference(tau: float, iters: int) -> None:
    x = sample(11, 7, 10)
    center = sample(12, 10)
    out = centered_clip(x, center, tau, iters)
    assert_close(out, ref.centered_clip(np64(x), np64(center), tau, iters))


@pytest.mark.parametrize("m", [1, 3, 8])
@pytest.mark.parametrize("f", [0, 1, 2, 9])
def test_clipped_gossip_and_radius_match_reference(m: int, f: int) -> None:
    own = sample(m + f, 9)
    nbrs = sample(m + f + 1, m, 9, scale=2.0)
    w = torch.rand(m, generator=torch.Generator().manual_seed(m)) / m
    tau = adaptive_radius(own, nbrs, w, f)
    expected_tau = ref.adaptive_radius(np64(own), np64(nbrs), w.double().numpy(), f)
    assert tau.item() == pytest.approx(expected_tau, rel=1e-6)
    for radius in (0.5, 3.0):
        out = clipped_gossip(own, nbrs, w, radius)
        assert_close(out, ref.clipped_gossip(np64(own), np64(nbrs), w.double().numpy(), radius))


def test_weighted_mean_matches_reference() -> None:
    x = sample(1, 6, 13)
    w = torch.tensor([0.1, 0.0, 0.3, 0.2, 0.25, 0.15])
    assert_close(mean(x, w), (w.double().numpy()[:, None] * np64(x)).sum(0))


# --- the distance-based rules stay exact where float32 Gram matrices would not ----


def test_distance_rules_far_from_origin() -> None:
    # vectors at 1e4 apart by 1e-2: x x^T cancellation would lose every digit
    x = sample(21, 9, 40, scale=1e-2, offset=1e4)
    xn = np64(x)
    assert_close(krum(x, 2), ref.krum(xn, 2), scale=1e4)
    assert_close(multi_krum(x, 2, 4), ref.multi_krum(xn, 2, 4), scale=1e4)
    assert_close(nnm(x, 2), ref.nnm(xn, 2), scale=1e4)
    assert_close(bulyan(x, 1), ref.bulyan(xn, 1), scale=1e4)
    # a float32 result near 1e4 is exact to ~1e-3 (one ulp), a tenth of the spread
    error = geometric_median(x, tol=0.0, max_iter=30).double().numpy()
    error -= ref.geometric_median(xn, 1e-6, 0.0, 30)
    assert np.abs(error).max() < 2e-3
    x64 = sample(21, 9, 40, scale=1e-2, offset=1e4, dtype=torch.float64)
    expected = ref.geometric_median(x64.numpy(), 1e-6, 0.0, 30)
    np.testing.assert_allclose(
        geometric_median(x64, tol=0.0, max_iter=30).numpy(), expected, atol=1e-8
    )


def test_distance_rules_with_a_far_byzantine_vector() -> None:
    x = sample(22, 8, 30, scale=1e-3)
    x[0] = 1e8  # the centring reference must not be this one
    xn = np64(x)
    assert_close(krum(x, 1), ref.krum(xn, 1))
    assert_close(nnm(x, 2), ref.nnm(xn, 2), scale=1e8)
    assert float(geometric_median(x).abs().max()) < 0.01


def test_near_ties_are_recomputed_exactly(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[list[int]] = []
    original = _pairwise.Pairwise.refine

    def spy(self: _pairwise.Pairwise, item: int, rows: list[int]) -> None:
        calls.append(rows)
        original(self, item, rows)

    monkeypatch.setattr(_pairwise.Pairwise, "refine", spy)
    base = sample(23, 4, 16)
    x = torch.cat([base, base[:2], sample(24, 1, 16, offset=30.0)])  # duplicates: exact ties
    assert_close(krum(x, 1), ref.krum(np64(x), 1))
    assert_close(multi_krum(x, 1, 3), ref.multi_krum(np64(x), 1, 3))
    assert_close(nnm(x, 2), ref.nnm(np64(x), 2))
    assert calls, "duplicated inputs must trigger the exact recomputation"


def test_certain_lowest_reports_overlapping_intervals() -> None:
    values = torch.tensor([[1.0, 2.0, 2.05, 9.0]], dtype=torch.float64)
    mask = torch.ones_like(values, dtype=torch.bool)
    tight = torch.zeros_like(values)
    chosen, undecided = _pairwise.certain_lowest(values, tight, mask, 2)
    assert chosen.tolist() == [[True, True, False, False]]
    assert not undecided.any()
    loose = torch.full_like(values, 0.1)
    chosen, undecided = _pairwise.certain_lowest(values, loose, mask, 2)
    assert chosen.tolist() == [[True, False, False, False]]
    assert undecided.tolist() == [[False, True, True, False]]


# --- batched calls give every item its own result --------------------------------


def test_batched_equals_per_item() -> None:
    b, n, d, f = 4, 11, 23, 2
    x = sample(30, b, n, d)
    center = sample(31, b, d)
    w = torch.rand(b, n, generator=torch.Generator().manual_seed(2))
    rules = {
        "mean": lambda v, i: mean(v, w[i] if i is not None else w),
        "median": lambda v, i: median(v),
        "trimmed_mean": lambda v, i: trimmed_mean(v, f),
        "krum": lambda v, i: krum(v, f),
        "multi_krum": lambda v, i: multi_krum(v, f, 5),
        "bulyan": lambda v, i: bulyan(v, f),
        "nnm": lambda v, i: nnm(v, f),
        "geometric_median": lambda v, i: geometric_median(v, tol=0.0, max_iter=20),
        "centered_clip": lambda v, i: centered_clip(
            v, center[i] if i is not None else center, 0.5, 2
        ),
    }
    for name, rule in rules.items():
        batched = rule(x, None)
        single = torch.stack([rule(x[i], i) for i in range(b)])
        torch.testing.assert_close(batched, single, rtol=1e-5, atol=1e-6, msg=name)


def test_batched_clipped_gossip_equals_per_item() -> None:
    own, nbrs = sample(40, 3, 6), sample(41, 3, 5, 6)
    w = torch.full((3, 5), 0.15)
    tau = adaptive_radius(own, nbrs, w, 1)
    batched = clipped_gossip(own, nbrs, w, tau)
    single = torch.stack(
        [
            clipped_gossip(own[i], nbrs[i], w[i], adaptive_radius(own[i], nbrs[i], w[i], 1))
            for i in range(3)
        ]
    )
    torch.testing.assert_close(batched, single)


def test_geometric_median_items_stop_independently() -> None:
    # item 0 converges at once (identical points), item 1 keeps iterating
    x = torch.stack([torch.ones(5, 3), sample(42, 5, 3)])
    out = geometric_median(x)
    torch.testing.assert_close(out[0], torch.ones(3))
    torch.testing.assert_close(out[1], geometric_median(x[1]), rtol=1e-5, atol=1e-6)


def test_inputs_are_not_modified() -> None:
    x = sample(50, 9, 12)
    before = x.clone()
    for rule in (median, lambda v: trimmed_mean(v, 2), lambda v: krum(v, 2), lambda v: nnm(v, 2)):
        rule(x)
    centered_clip(x, x[0], 1.0, 2)
    geometric_median(x)
    bulyan(x, 1)
    assert torch.equal(x, before)


def test_non_contiguous_inputs() -> None:
    x = sample(51, 20, 9).T  # (9, 20) with strides (1, 9)
    xn = np64(x)
    assert_close(median(x), ref.median(xn))
    assert_close(trimmed_mean(x, 2), ref.trimmed_mean(xn, 2))
    assert_close(krum(x, 2), ref.krum(xn, 2))


# --- validation -------------------------------------------------------------------


def test_wrong_ndim_is_rejected() -> None:
    for rule in (median, mean, geometric_median, lambda v: krum(v, 0), lambda v: nnm(v, 0)):
        with pytest.raises(ValueError, match=r"must have shape \(n, d\) or \(b, n, d\)"):
            rule(torch.zeros(5))
        with pytest.raises(ValueError, match=r"shape \(n, d\) or \(b, n, d\)"):
            rule(torch.zeros(2, 2, 2, 2))


def test_bad_tensors_are_rejected() -> None:
    with pytest.raises(ValueError, match=r"must be a torch\.Tensor"):
        median([[1.0]])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="float32 or float64"):
        median(torch.ones(3, 2, dtype=torch.int64))
    with pytest.raises(ValueError, match=r"no vectors \(n = 0\)"):
        median(torch.zeros(0, 4))


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda x: trimmed_mean(x, 2), r"trimmed_mean needs n >= 2f\+1 = 5 .* f=2, got n=4"),
        (lambda x: krum(x, 1), r"krum needs n >= 2f\+3 = 5 .* f=1, got n=4"),
        (lambda x: multi_krum(x, 1, 2), r"multi_krum needs n >= 2f\+3 = 5 .* f=1, got n=4"),
        (lambda x: bulyan(x, 1), r"bulyan needs n >= 4f\+3 = 7 .* f=1, got n=4"),
        (lambda x: nnm(x, 2), r"nnm needs n >= 2f\+1 = 5 .* f=2, got n=4"),
    ],
)
def test_too_few_inputs_for_f(call: Callable[[torch.Tensor], torch.Tensor], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call(torch.zeros(4, 3))


@pytest.mark.parametrize("f", [-1, 1.5, True, "1"])
def test_bad_f_is_rejected(f: object) -> None:
    with pytest.raises(ValueError, match="f must be"):
        krum(torch.zeros(9, 2), f)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_inputs_are_rejected(bad: float) -> None:
    x = torch.zeros(7, 3)
    x[4, 1] = bad
    for rule in (
        median,
        mean,
        geometric_median,
        lambda v: trimmed_mean(v, 1),
        lambda v: krum(v, 1),
        lambda v: multi_krum(v, 1, 2),
        lambda v: bulyan(v, 1),
        lambda v: nnm(v, 1),
        lambda v: centered_clip(v, torch.zeros(3), 1.0),
    ):
        with pytest.raises(ValueError, match="NaN or infinite"):
            rule(x)
    with pytest.raises(ValueError, match="NaN or infinite"):
        clipped_gossip(torch.zeros(3), x, torch.ones(7) / 7, 1.0)
    with pytest.raises(ValueError, match="center contains NaN"):
        centered_clip(torch.zeros(7, 3), x[4], 1.0)


def test_mismatched_lengths_are_rejected() -> None:
    x = torch.zeros(4, 3)
    with pytest.raises(ValueError, match=r"weights must have shape \(4,\)"):
        mean(x, torch.ones(3))
    with pytest.raises(ValueError, match=r"weights must have shape \(2, 4\)"):
        mean(torch.zeros(2, 4, 3), torch.ones(4))
    with pytest.raises(ValueError, match=r"center must have shape \(3,\)"):
        centered_clip(x, torch.zeros(4), 1.0)
    with pytest.raises(ValueError, match=r"center must have shape \(2, 3\)"):
        centered_clip(torch.zeros(2, 4, 3), torch.zeros(3), 1.0)
    with pytest.raises(ValueError, match=r"own must have shape \(3,\)"):
        clipped_gossip(torch.zeros(4), x, torch.ones(4), 1.0)
    with pytest.raises(ValueError, match=r"weights must have shape \(4,\)"):
        clipped_gossip(torch.zeros(3), x, torch.ones(5), 1.0)
    with pytest.raises(ValueError, match=r"multi_krum: m=6 exceeds .* n=5"):
        multi_krum(torch.zeros(5, 2), 1, 6)


def test_bad_parameters_are_rejected() -> None:
    x = torch.zeros(5, 2)
    with pytest.raises(ValueError, match="weights must be non-negative"):
        mean(x, torch.tensor([1.0, -1.0, 0.0, 0.0, 1.0]))
    with pytest.raises(ValueError, match="positive sum"):
        mean(x, torch.zeros(5))
    with pytest.raises(ValueError, match="m must be >= 1"):
        multi_krum(x, 1, 0)
    with pytest.raises(ValueError, match="nu must be finite and > 0"):
        geometric_median(x, nu=0.0)
    with pytest.raises(ValueError, match="tol must be finite and >= 0"):
        geometric_median(x, tol=-1.0)
    with pytest.raises(ValueError, match="max_iter must be >= 1"):
        geometric_median(x, max_iter=0)
    with pytest.raises(ValueError, match="tau must be finite and > 0"):
        centered_clip(x, torch.zeros(2), 0.0)
    with pytest.raises(ValueError, match="iters must be >= 1"):
        centered_clip(x, torch.zeros(2), 1.0, 0)
    with pytest.raises(ValueError, match="tau must be finite and > 0"):
        clipped_gossip(torch.zeros(2), x, torch.ones(5), -1.0)
    with pytest.raises(ValueError, match=r"tau must be >= 0 \(inf: no clipping\)"):
        clipped_gossip(torch.zeros(2), x, torch.ones(5), torch.tensor(-1.0))
    with pytest.raises(ValueError, match=r"tau must be >= 0"):
        clipped_gossip(torch.zeros(2), x, torch.ones(5), torch.tensor(float("nan")))
    with pytest.raises(ValueError, match="f must be >= 0"):
        adaptive_radius(torch.zeros(2), x, torch.ones(5), -1)
