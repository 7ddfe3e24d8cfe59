"""Properties every input must satisfy, for the attacks with a defining inequality."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from p2pfl.attacks import AttackView, alie_z, make_attack
from p2pfl.attacks.data_poisoning import backdoor, label_flip

pytestmark = pytest.mark.timeout(120)

SETTINGS = settings(max_examples=60, deadline=None)

values = st.floats(-100.0, 100.0, allow_nan=False, width=32)


@st.composite
def honest_sets(draw: st.DrawFn, min_h: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """(own (d,), honest (h, d)) with small, finite float32 entries."""
    h = draw(st.integers(min_h, 7))
    d = draw(st.integers(1, 12))
    honest = draw(hnp.arrays(np.float32, (h, d), elements=values))
    own = draw(hnp.arrays(np.float32, (d,), elements=values))
    return torch.from_numpy(own), torch.from_numpy(honest)


def view_of(
    own: torch.Tensor, honest: torch.Tensor, n: int = 7, f: int = 2, seed: int = 0
) -> AttackView:
    d = own.shape[0]
    return AttackView(
        own=own,
        honest=honest,
        targets=torch.zeros(0, d),
        target_weights=torch.zeros(0),
        target_pull=torch.zeros(0, d),
        target_byzantine_weight=torch.zeros(0),
        n=n,
        f=f,
        generator=torch.Generator().manual_seed(seed),
        before=-own,
    )


def scale_of(x: torch.Tensor) -> float:
    return 1.0 + float(x.abs().max())


@SETTINGS
@given(data=honest_sets(), n=st.integers(3, 40), f_frac=st.floats(0.0, 0.45))
def test_alie_within_z_standard_deviations(
    data: tuple[torch.Tensor, torch.Tensor], n: int, f_frac: float
) -> None:
    own, honest = data
    f = int(f_frac * n)
    s = n // 2 + 1 - f
    assume(0 < (n - s) / n < 1)
    out = make_attack("alie").craft(view_of(own, honest, n=n, f=f))
    x = honest.double()
    mu = x.mean(0)
    sigma = x.std(0) if x.shape[0] > 1 else torch.zeros_like(mu)
    z = alie_z(n, f)
    tol = 1e-5 * scale_of(honest)
    assert torch.all((out.double() - mu).abs() <= abs(z) * sigma + tol)


@SETTINGS
@given(data=honest_sets(), eps=st.floats(1e-3, 100.0))
def test_ipm_negative_inner_product(data: tuple[torch.Tensor, torch.Tensor], eps: float) -> None:
    own, honest = data
    mu = honest.double().mean(0)
    assume(float(mu.norm()) > 1e-3)
    out = make_attack("ipm", {"eps": eps}).craft(view_of(own, honest))
    assert float(out.double() @ mu) < 0


@SETTINGS
@given(data=honest_sets(), perturbation=st.sampled_from(["unit_vec", "std", "sign"]))
def test_min_max_within_honest_max_distance(
    data: tuple[torch.Tensor, torch.Tensor], perturbation: str
) -> None:
    own, honest = data
    out = make_attack("min_max", {"perturbation": perturbation}).craft(view_of(own, honest))
    x = honest.double()
    worst = float(torch.linalg.vector_norm(x - out.double(), dim=1).max())
    honest_max = float(torch.cdist(x, x).max())
    assert worst <= honest_max + 1e-5 * scale_of(honest)


@SETTINGS
@given(data=honest_sets(), perturbation=st.sampled_from(["unit_vec", "std", "sign"]))
def test_min_sum_within_honest_max_sum(
    data: tuple[torch.Tensor, torch.Tensor], perturbation: str
) -> None:
    own, honest = data
    out = make_attack("min_sum", {"perturbation": perturbation}).craft(view_of(own, honest))
    x = honest.double()
    total = float(torch.linalg.vector_norm(x - out.double(), dim=1).square().sum())
    bound = float(torch.cdist(x, x).square().sum(1).max())
    assert total <= bound * (1 + 1e-5) + 1e-5 * scale_of(honest) ** 2


@SETTINGS
@given(
    data=honest_sets(),
    b=st.floats(1.01, 10.0),
    reference=st.sampled_from(["before", "own", "zero"]),
    seed=st.integers(0, 2**31),
)
def test_fang_beyond_extreme_opposite_direction(
    data: tuple[torch.Tensor, torch.Tensor], b: float, reference: str, seed: int
) -> None:
    own, honest = data
    attack = make_attack("fang_trimmed_mean", {"b": b, "reference": reference})
    view = view_of(own, honest, seed=seed)
    out = attack.craft(view)
    refs = {"before": -own, "own": own, "zero": torch.zeros_like(own)}
    s = torch.where(honest.mean(0) - refs[reference] < 0, -1.0, 1.0)
    up = s < 0
    assert torch.all(out[up] >= honest.max(0).values[up])
    assert torch.all(out[~up] <= honest.min(0).values[~up])
    assert torch.equal(out, attack.craft(view_of(own, honest, seed=seed)))


@SETTINGS
@given(data=honest_sets(), scale=st.floats(1e-3, 1e3))
def test_sign_flip_is_negated_scaled_own(
    data: tuple[torch.Tensor, torch.Tensor], scale: float
) -> None:
    own, honest = data
    out = make_attack("sign_flip", {"scale": scale}).craft(view_of(own, honest))
    assert torch.allclose(out, -scale * own)
    assert torch.all(out * own <= 0)


@SETTINGS
@given(
    t=st.integers(1, 5),
    d=st.integers(1, 8),
    eps=st.floats(0.1, 5.0),
    seed=st.integers(0, 2**31),
)
def test_dissensus_gossip_step_is_one_minus_eps_pull(t: int, d: int, eps: float, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(t, d, generator=g, dtype=torch.float64)
    pull = torch.randn(t, d, generator=g, dtype=torch.float64)
    w = torch.rand(t, generator=g, dtype=torch.float64) * 0.5 + 0.05
    view = AttackView(
        own=torch.zeros(d, dtype=torch.float64),
        honest=torch.zeros(0, d, dtype=torch.float64),
        targets=x,
        target_weights=w,
        target_pull=pull,
        target_byzantine_weight=w,
        n=3,
        f=1,
        generator=g,
    )
    y = make_attack("dissensus", {"eps": eps}).craft(view)
    step = x + pull + w.reshape(-1, 1) * (y - x)
    assert torch.allclose(step, x + (1 - eps) * pull, atol=1e-9)


@SETTINGS
@given(c=st.integers(2, 20), labels=st.lists(st.integers(0, 10**6), min_size=1, max_size=30))
def test_label_flip_is_an_involution_within_range(c: int, labels: list[int]) -> None:
    y = torch.tensor([v % c for v in labels])
    x = torch.zeros(len(labels), 2)
    _, y1 = label_flip(x, y, c, torch.Generator())
    _, y2 = label_flip(x, y1, c, torch.Generator())
    assert torch.equal(y2, y)
    assert int(y1.min()) >= 0 and int(y1.max()) < c


@SETTINGS
@given(n=st.integers(1, 60), fraction=st.floats(0.0, 1.0), seed=st.integers(0, 2**31))
def test_backdoor_relabels_exactly_round_fraction(n: int, fraction: float, seed: int) -> None:
    x = torch.zeros(n, 1, 4, 4)
    y = torch.zeros(n, dtype=torch.int64)
    g = torch.Generator().manual_seed(seed)
    x2, y2 = backdoor(x, y, 3, g, fraction=fraction, target=2, size=2, value=1.0)
    k = round(fraction * n)
    assert int((y2 == 2).sum()) == k
    assert int(x2.flatten(1).any(dim=1).sum()) == k
    assert math.isclose(float(x2.sum()), 4.0 * k)
