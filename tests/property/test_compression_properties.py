"""Compression operators: contraction, unbiasedness, bounds, data-independent encodings."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pfl import wire
from p2pfl.compression import COMPRESSORS, Encoding, decompress, make_compressor

pytestmark = pytest.mark.timeout(120)

FLOATS = st.floats(-1e3, 1e3, allow_nan=False, width=32)


def vectors(min_size: int = 1, max_size: int = 64) -> st.SearchStrategy[torch.Tensor]:
    return st.lists(FLOATS, min_size=min_size, max_size=max_size).map(
        lambda xs: torch.tensor(xs, dtype=torch.float32)
    )


def sq(x: torch.Tensor) -> float:
    return float((x.double() ** 2).sum())


@given(vectors(), st.floats(0.01, 1.0))
def test_top_k_is_a_k_over_d_contraction(x: torch.Tensor, ratio: float) -> None:
    comp = make_compressor("top_k", {"ratio": ratio})
    payload = comp.compress(x, torch.Generator())
    d, k = x.numel(), payload.indices.numel()  # type: ignore[union-attr]

    err = sq(decompress(payload) - x)

    assert k == min(d, max(1, math.ceil(ratio * d)))
    assert err <= (1 - k / d) * sq(x) * (1 + 1e-6) + 1e-9
    # the kept coordinates are the largest in magnitude
    kept = x.abs()[payload.indices.long()]  # type: ignore[union-attr]
    dropped = torch.ones(d, dtype=torch.bool)
    dropped[payload.indices.long()] = False  # type: ignore[union-attr]
    if bool(dropped.any()):
        assert float(kept.min()) >= float(x.abs()[dropped].max())


@given(vectors(), st.floats(0.01, 1.0), st.integers(0, 2**31))
def test_random_k_unscaled_keeps_exactly_k_coordinates(
    x: torch.Tensor, ratio: float, seed: int
) -> None:
    g = torch.Generator()
    g.manual_seed(seed)
    payload = make_compressor("random_k", {"ratio": ratio}).compress(x, g)
    y = decompress(payload)
    idx = payload.indices.long()  # type: ignore[union-attr]

    assert bool((idx[1:] > idx[:-1]).all())
    assert torch.equal(y[idx], x[idx])
    assert sq(y - x) == pytest.approx(sq(x) - sq(x[idx]), rel=1e-5, abs=1e-6)


def _mean_of_draws(
    name: str, params: dict[str, object], x: torch.Tensor, draws: int
) -> torch.Tensor:
    comp = make_compressor(name, params)
    total = torch.zeros_like(x, dtype=torch.float64)
    g = torch.Generator()
    g.manual_seed(7)
    for _ in range(draws):
        total += decompress(comp.compress(x, g)).double()
    return total / draws


@settings(max_examples=4, deadline=None)
@given(vectors(2, 12))
def test_scaled_random_k_is_unbiased(x: torch.Tensor) -> None:
    draws, ratio = 2000, 0.5
    d = x.numel()
    k = max(1, math.ceil(ratio * d))

    mean = _mean_of_draws("random_k", {"ratio": ratio, "scaled": True}, x, draws)

    # per coordinate: Var = x_j^2 (d/k - 1); six standard errors
    tol = 6 * torch.sqrt(x.double() ** 2 * (d / k - 1) / draws) + 1e-3
    assert bool(((mean - x.double()).abs() <= tol).all()), (mean, x)


@settings(max_examples=4, deadline=None)
@given(vectors(2, 12), st.integers(1, 8))
def test_qsgd_is_unbiased_with_the_papers_variance(x: torch.Tensor, levels: int) -> None:
    draws = 2000
    norm = float(torch.linalg.vector_norm(x))

    mean = _mean_of_draws("qsgd", {"levels": levels, "block": 512}, x, draws)

    # stochastic rounding between two levels norm/s apart: Var <= (norm / s)^2 / 4
    tol = 6 * math.sqrt((norm / levels) ** 2 / 4 / draws) + 1e-3
    assert float((mean - x.double()).abs().max()) <= tol


@given(vectors(), st.integers(1, 127), st.integers(1, 40), st.integers(0, 2**31))
def test_qsgd_variance_bound_and_codes(x: torch.Tensor, levels: int, block: int, seed: int) -> None:
    g = torch.Generator()
    g.manual_seed(seed)
    p = make_compressor("qsgd", {"levels": levels, "block": block}).compress(x, g)
    codes = p.codes.long()  # type: ignore[union-attr]

    assert int(codes.abs().max()) <= levels
    # one draw: every coordinate within one level of its value, so per block
    # ||Q(v) - v||^2 <= block * (||v|| / s)^2
    y = decompress(p)
    for start in range(0, x.numel(), block):
        v, q = x[start : start + block], y[start : start + block]
        assert sq(q - v) <= v.numel() * (math.sqrt(sq(v)) / levels) ** 2 * (1 + 1e-4) + 1e-6


@given(vectors(), st.integers(1, 300))
def test_int8_error_is_at_most_half_a_step_per_block(x: torch.Tensor, block: int) -> None:
    p = make_compressor("int8", {"block": block}).compress(x, torch.Generator())
    y = decompress(p)
    for b, start in enumerate(range(0, x.numel(), block)):
        v = x[start : start + block]
        step = float(v.abs().max()) / 127
        assert float(p.scales[b]) == pytest.approx(step, rel=1e-6)  # type: ignore[union-attr]
        assert float((y[start : start + block] - v).abs().max()) <= step / 2 * (1 + 1e-5) + 1e-30
    assert sq(y - x) <= block / (4 * 127**2) * sq(x) * (1 + 1e-4) + 1e-9


@given(vectors())
def test_half_precisions_have_their_relative_error(x: torch.Tensor) -> None:
    for name, eps in (("fp16", 2**-11), ("bf16", 2**-8)):
        y = decompress(make_compressor(name, {}).compress(x, torch.Generator()))
        big = x.abs() >= 1e-4  # away from fp16's subnormals
        rel = ((y - x).abs()[big] / x.abs()[big]).max() if bool(big.any()) else torch.tensor(0.0)
        assert float(rel) <= eps * (1 + 1e-6)


@given(st.sampled_from(sorted(COMPRESSORS)), vectors(1, 200), st.integers(0, 2**31))
def test_encodings_do_not_depend_on_the_vector_and_round_trip_the_wire(
    name: str, x: torch.Tensor, seed: int
) -> None:
    comp = make_compressor(name, {})
    g = torch.Generator()
    g.manual_seed(seed)
    payload = comp.compress(x, g)
    frames = wire.encode(wire.vector_message(5, 9, payload))

    back = wire.decode([bytes(f) for f in frames])

    assert Encoding.of(payload) == comp.encoding(x.numel())
    assert isinstance(back, wire.Params | wire.Packed)
    assert (back.sender, back.round) == (5, 9)
    assert torch.equal(decompress(wire.payload_of(back)), decompress(payload))
    header = wire.encoded_nbytes(frames) - Encoding.of(payload).payload_bytes
    assert 0 < header <= wire.MAX_HEADER_BYTES
