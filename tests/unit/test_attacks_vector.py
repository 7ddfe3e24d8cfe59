"""Each vector attack's defining property, determinism and validation."""

from __future__ import annotations

import math
from statistics import NormalDist

import pytest
import torch

from p2pfl.attacks import AttackView, alie_z, make_attack
from p2pfl.attacks.alie import alie
from p2pfl.attacks.dissensus import dissensus
from p2pfl.attacks.fang import fang
from p2pfl.attacks.ipm import ipm
from p2pfl.attacks.mimic import mimic
from p2pfl.attacks.minmax import min_max, min_sum, perturbation_vector, search_gamma
from p2pfl.attacks.simple import gaussian, random, scaled, sign_flip, zero

pytestmark = pytest.mark.timeout(60)


def make_view(
    own: torch.Tensor,
    honest: torch.Tensor,
    *,
    targets: torch.Tensor | None = None,
    pull: torch.Tensor | None = None,
    byz_weight: torch.Tensor | None = None,
    n: int = 7,
    f: int = 2,
    seed: int = 0,
    before: torch.Tensor | None = None,
    no_before: bool = False,
) -> AttackView:
    """A view; ``before`` (Fang's reference) defaults to ``own`` unless ``no_before``."""
    d = own.shape[0]
    targets = torch.zeros(0, d) if targets is None else targets
    t = targets.shape[0]
    return AttackView(
        own=own,
        honest=honest,
        targets=targets,
        target_weights=torch.full((t,), 0.2),
        target_pull=torch.zeros(t, d) if pull is None else pull,
        target_byzantine_weight=torch.full((t,), 0.2) if byz_weight is None else byz_weight,
        n=n,
        f=f,
        generator=torch.Generator().manual_seed(seed),
        before=None if no_before else (own if before is None else before),
    )


def random_view(
    h: int = 6, d: int = 20, seed: int = 1, gen_seed: int | None = None, **kw: object
) -> AttackView:
    """Random data from ``seed``; the view's generator seeded with ``gen_seed`` (or ``seed``)."""
    g = torch.Generator().manual_seed(seed)
    own = torch.randn(d, generator=g)
    honest = torch.randn(h, d, generator=g) + 0.5
    gen = seed if gen_seed is None else gen_seed
    return make_view(own, honest, seed=gen, **kw)  # type: ignore[arg-type]


# --- simple -----------------------------------------------------------------------


def test_sign_flip_scaled_zero_exact() -> None:
    own = torch.tensor([1.0, -2.0, 0.5])
    view = make_view(own, torch.zeros(1, 3))
    assert torch.equal(sign_flip(view), torch.tensor([-1.0, 2.0, -0.5]))
    assert torch.equal(sign_flip(view, scale=2.0), torch.tensor([-2.0, 4.0, -1.0]))
    assert torch.equal(scaled(view, lam=-3.0), torch.tensor([-3.0, 6.0, -1.5]))
    assert torch.equal(zero(view), torch.zeros(3))
    assert zero(view).dtype == torch.float32


def test_gaussian_empirical_std_close_to_sigma() -> None:
    d = 200_000
    view = make_view(torch.full((d,), 5.0), torch.zeros(1, d))
    noise = gaussian(view, sigma=3.0)
    assert abs(float(noise.std()) - 3.0) < 0.03
    assert abs(float(noise.mean())) < 0.03
    around = gaussian(
        make_view(torch.full((d,), 5.0), torch.zeros(1, d)), sigma=3.0, around_own=True
    )
    # same generator seed: the same noise, shifted by own
    assert torch.allclose(around - 5.0, noise, atol=1e-5)


def test_gaussian_sigma_zero_is_exact() -> None:
    own = torch.tensor([1.0, 2.0])
    view = make_view(own, torch.zeros(1, 2))
    assert torch.equal(gaussian(view, sigma=0.0), torch.zeros(2))
    assert torch.equal(gaussian(make_view(own, torch.zeros(1, 2)), sigma=0.0, around_own=True), own)


def test_random_within_bounds_and_spread() -> None:
    d = 50_000
    out = random(make_view(torch.zeros(d), torch.zeros(1, d)), a=2.5)
    assert float(out.abs().max()) <= 2.5
    assert float(out.max()) > 2.4 and float(out.min()) < -2.4
    # uniform on [-a, a] has variance a^2 / 3
    assert abs(float(out.var()) - 2.5**2 / 3) < 0.05


@pytest.mark.parametrize("name", ["gaussian", "random", "fang_median", "fang_trimmed_mean"])
def test_randomized_attacks_deterministic_under_seed(name: str) -> None:
    attack = make_attack(name)
    a = attack.craft(random_view(seed=5))
    b = attack.craft(random_view(seed=5))
    c = attack.craft(random_view(seed=5, gen_seed=6))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


@pytest.mark.parametrize("name", ["alie", "ipm", "min_max", "min_sum", "mimic", "dissensus"])
def test_deterministic_attacks_ignore_the_generator(name: str) -> None:
    targets = torch.ones(2, 20)
    a = make_attack(name).craft(random_view(seed=5, targets=targets))
    b = make_attack(name).craft(random_view(seed=5, gen_seed=9, targets=targets))
    assert torch.equal(a, b)


# --- ALIE --------------------------------------------------------------------------


@pytest.mark.parametrize(("n", "f"), [(10, 2), (7, 2), (3, 1), (25, 6), (10, 0), (2, 1)])
def test_alie_z_matches_formula(n: int, f: int) -> None:
    s = math.floor(n / 2 + 1) - f
    assert alie_z(n, f) == pytest.approx(NormalDist().inv_cdf((n - s) / n))


def test_alie_z_known_value() -> None:
    # n = 10, f = 2: s = 4, z = Phi^-1(0.6) ~= 0.2533
    assert alie_z(10, 2) == pytest.approx(0.2533, abs=1e-4)


@pytest.mark.parametrize(("n", "f"), [(2, 0), (1, 0), (5, 3), (10, 6)])
def test_alie_z_undefined_raises(n: int, f: int) -> None:
    with pytest.raises(ValueError, match=f"undefined for n={n}, f={f}"):
        alie_z(n, f)
    view = random_view(n=n, f=f)
    with pytest.raises(ValueError, match="set the parameter z"):
        alie(view)
    assert alie(view, z=1.0).shape == (20,)  # an explicit z always works


def test_alie_within_z_std_of_mean() -> None:
    view = random_view(h=8, d=50, n=10, f=2)
    out = alie(view)
    mu = view.honest.mean(0)
    sigma = view.honest.std(0)
    z = alie_z(10, 2)
    assert torch.all((out - mu).abs() <= abs(z) * sigma + 1e-5)
    assert torch.allclose(out, mu + z * sigma, atol=1e-5)


def test_alie_explicit_negative_z_flips_side() -> None:
    view = random_view(h=8)
    mu, sigma = view.honest.mean(0), view.honest.std(0)
    assert torch.allclose(alie(view, z=-10.0), mu - 10.0 * sigma, atol=1e-4)


def test_alie_single_honest_vector_has_zero_sigma() -> None:
    honest = torch.tensor([[1.0, -2.0, 3.0]])
    out = alie(make_view(torch.zeros(3), honest), z=10.0)
    assert torch.equal(out, honest[0])
    assert torch.isfinite(out).all()


# --- IPM ---------------------------------------------------------------------------


def test_ipm_inner_product_negative_and_exact() -> None:
    view = random_view()
    mu = view.honest.mean(0)
    out = ipm(view, eps=0.5)
    assert torch.allclose(out, -0.5 * mu)
    assert float(out @ mu) < 0


# --- Min-Max / Min-Sum ---------------------------------------------------------------


def _dist(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    return torch.linalg.vector_norm(x.double() - m.double(), dim=1)


@pytest.mark.parametrize("perturbation", ["unit_vec", "std", "sign"])
def test_min_max_condition_and_maximal_gamma(perturbation: str) -> None:
    view = random_view(h=7, d=30)
    x = view.honest.double()
    tol = 1e-7
    out = min_max(view, perturbation=perturbation, tol=tol)  # type: ignore[arg-type]
    honest_max = float(torch.cdist(x, x).max())
    assert float(_dist(x, out).max()) <= honest_max * (1 + 1e-6)
    p = perturbation_vector(view.honest, perturbation)
    mu = x.mean(0)
    gamma = float((out.double() - mu) @ p / (p @ p))
    assert gamma > 0
    # any gamma noticeably larger violates the condition: gamma is maximal
    worse = mu + gamma * (1 + 10 * tol) * p
    assert float(_dist(x, worse).max()) > honest_max
    # and it agrees with the closed-form root of the quadratic constraints
    dev = mu - x
    a, b, c = float(p @ p), dev @ p, (dev * dev).sum(1)
    roots = (-b + torch.sqrt(b * b - a * (c - honest_max**2))) / a
    assert gamma == pytest.approx(float(roots.min()), rel=1e-5)


@pytest.mark.parametrize("perturbation", ["unit_vec", "std", "sign"])
def test_min_sum_condition_and_maximal_gamma(perturbation: str) -> None:
    view = random_view(h=7, d=30)
    x = view.honest.double()
    tol = 1e-7
    out = min_sum(view, perturbation=perturbation, tol=tol)  # type: ignore[arg-type]
    bound = float(torch.cdist(x, x).square().sum(1).max())
    assert float(_dist(x, out).square().sum()) <= bound * (1 + 1e-6)
    p = perturbation_vector(view.honest, perturbation)
    mu = x.mean(0)
    gamma = float((out.double() - mu) @ p / (p @ p))
    worse = mu + gamma * (1 + 10 * tol) * p
    assert float(_dist(x, worse).square().sum()) > bound
    # closed form: sum_i ||mu - x_i||^2 + h gamma^2 ||p||^2 = bound
    s0 = float(_dist(x, mu).square().sum())
    assert gamma == pytest.approx(math.sqrt((bound - s0) / (x.shape[0] * float(p @ p))), rel=1e-5)


def test_min_max_perturbation_directions() -> None:
    honest = torch.tensor([[1.0, -2.0], [3.0, -4.0]])
    mu = honest.mean(0).double()
    assert torch.allclose(perturbation_vector(honest, "unit_vec"), -mu / mu.norm())
    assert torch.equal(perturbation_vector(honest, "sign"), torch.tensor([-1.0, 1.0]).double())
    assert torch.allclose(perturbation_vector(honest, "std"), -honest.double().std(0))


def test_min_max_degenerate_cases_send_the_mean() -> None:
    same = torch.ones(4, 3)
    assert torch.equal(min_max(make_view(torch.zeros(3), same)), torch.ones(3))
    one = torch.tensor([[2.0, -1.0, 0.0]])
    assert torch.equal(min_sum(make_view(torch.zeros(3), one)), one[0])
    # std perturbation with a single vector is zero: gamma 0
    assert search_gamma(one, perturbation_vector(one, "std"), "max") == 0.0


# --- Fang ---------------------------------------------------------------------------


@pytest.mark.parametrize("reference", ["own", "zero"])
def test_fang_beyond_honest_extreme_opposite_direction(reference: str) -> None:
    view = random_view(h=9, d=400)
    out = fang(view, reference=reference)  # type: ignore[arg-type]
    ref = view.own if reference == "own" else torch.zeros(400)
    s = torch.where(view.honest.mean(0) - ref < 0, -1.0, 1.0)
    w_max, w_min = view.honest.max(0).values, view.honest.min(0).values
    up, down = s < 0, s > 0
    assert up.any() and down.any()
    assert torch.all(out[up] >= w_max[up])
    assert torch.all(out[down] <= w_min[down])
    # within the paper's intervals, b = 2
    assert torch.all(out[up] <= torch.maximum(2 * w_max, w_max / 2)[up])
    assert torch.all(out[down] >= torch.minimum(2 * w_min, w_min / 2)[down])


def test_fang_interval_by_sign_hand_example() -> None:
    honest = torch.tensor([[1.0, -1.0, 2.0, -2.0], [3.0, -3.0, 4.0, -4.0]])
    # own chosen so s = (-1, -1, +1, +1): mean(honest) - own
    own = torch.tensor([5.0, 0.0, 0.0, -10.0])
    out = fang(make_view(own, honest), b=2.0)
    assert 3.0 <= out[0] <= 6.0  # w_max = 3 > 0: [3, 6]
    assert -1.0 <= out[1] <= -0.5  # w_max = -1: [-1, -0.5]
    assert 1.0 <= out[2] <= 2.0  # w_min = 2 > 0: [1, 2]
    assert -8.0 <= out[3] <= -4.0  # w_min = -4: [-8, -4]


def test_fang_before_reference_is_the_rounds_change() -> None:
    """Default reference: s = sign(mean(honest) - before), the honest models' change."""
    honest = torch.tensor([[1.0, -1.0, 2.0, -2.0], [3.0, -3.0, 4.0, -4.0]])
    before = torch.tensor([5.0, 0.0, 0.0, -10.0])  # s = (-1, -1, +1, +1)
    own = torch.tensor([0.0, -4.0, 5.0, 0.0])  # mean(honest) - own has every sign flipped
    out = fang(make_view(own, honest, before=before), b=2.0)
    assert 3.0 <= out[0] <= 6.0 and -1.0 <= out[1] <= -0.5
    assert 1.0 <= out[2] <= 2.0 and -8.0 <= out[3] <= -4.0
    flipped = fang(make_view(own, honest, before=before), b=2.0, reference="own")
    assert bool((flipped[:2] <= torch.tensor([1.0, -3.0])).all())  # now pushed down


def test_fang_before_without_the_starting_model_is_an_error() -> None:
    view = make_view(torch.zeros(3), torch.ones(2, 3), no_before=True)
    with pytest.raises(ValueError, match=r"reference='before' needs .*AttackView\.before"):
        fang(view)
    assert fang(view, reference="own").shape == (3,)


def test_attack_view_checks_before_shape() -> None:
    with pytest.raises(ValueError, match=r"AttackView\.before: expected a tensor of shape \(3,\)"):
        make_view(torch.zeros(3), torch.ones(2, 3), before=torch.zeros(4))


def test_fang_median_and_trimmed_mean_share_the_attack() -> None:
    a = make_attack("fang_median").craft(random_view(seed=3))
    b = make_attack("fang_trimmed_mean").craft(random_view(seed=3))
    assert torch.equal(a, b)


# --- dissensus ---------------------------------------------------------------------


def test_dissensus_matches_hand_computation() -> None:
    targets = torch.tensor([[1.0, 2.0], [0.0, -1.0]])
    pull = torch.tensor([[0.5, -0.5], [1.0, 0.0]])
    byz_w = torch.tensor([0.25, 0.5])
    view = make_view(
        torch.zeros(2), torch.zeros(0, 2), targets=targets, pull=pull, byz_weight=byz_w
    )
    out = dissensus(view, eps=2.0)
    # target 0: [1, 2] - 2 * [0.5, -0.5] / 0.25 = [1 - 4, 2 + 4]
    # target 1: [0, -1] - 2 * [1, 0] / 0.5 = [-4, -1]
    assert torch.equal(out, torch.tensor([[-3.0, 6.0], [-4.0, -1.0]]))
    assert out.shape == (2, 2)


def test_dissensus_cancels_the_honest_pull() -> None:
    # one Byzantine neighbour, weight w: the step x + pull + w (y - x) equals x + (1 - eps) pull
    targets = torch.tensor([[1.0, 1.0]])
    pull = torch.tensor([[0.3, -0.6]])
    w = torch.tensor([0.2])
    view = make_view(torch.zeros(2), torch.zeros(0, 2), targets=targets, pull=pull, byz_weight=w)
    y = dissensus(view, eps=1.0)
    step = targets + pull + w.reshape(-1, 1) * (y - targets)
    assert torch.allclose(step, targets, atol=1e-6)


def test_dissensus_no_targets_and_bad_weight() -> None:
    assert dissensus(make_view(torch.zeros(3), torch.zeros(0, 3))).shape == (0, 3)
    view = make_view(
        torch.zeros(2),
        torch.zeros(0, 2),
        targets=torch.ones(2, 2),
        byz_weight=torch.tensor([0.5, 0.0]),
    )
    with pytest.raises(ValueError, match="target 1"):
        dissensus(view)


# --- mimic ---------------------------------------------------------------------------


def test_mimic_copies_fixed_honest_vector() -> None:
    view = random_view(h=4)
    out = mimic(view, index=2)
    assert torch.equal(out, view.honest[2])
    assert out.data_ptr() != view.honest[2].data_ptr()
    with pytest.raises(ValueError, match="index=4 is out of range for 4"):
        mimic(view, index=4)


# --- validation ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["alie", "ipm", "min_max", "min_sum", "fang_median", "fang_trimmed_mean", "mimic"]
)
def test_attacks_needing_honest_vectors_raise_without_them(name: str) -> None:
    view = make_view(torch.ones(3), torch.zeros(0, 3))
    with pytest.raises(ValueError, match=f"{name.split('_')[0]}.* needs at least one honest"):
        make_attack(name).craft(view)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda v: sign_flip(v, scale=-1.0), "sign_flip: parameter scale"),
        (lambda v: gaussian(v, sigma=-1.0), "gaussian: parameter sigma"),
        (lambda v: random(v, a=float("nan")), "random: parameter a"),
        (lambda v: scaled(v, lam=float("nan")), "scaled: parameter lam"),
        (lambda v: ipm(v, eps=0.0), "ipm: parameter eps"),
        (lambda v: dissensus(v, eps=0.0), "dissensus: parameter eps"),
        (lambda v: alie(v, z=float("inf")), "alie: parameter z"),
        (lambda v: min_max(v, perturbation="bad"), "min_max: parameter perturbation"),  # type: ignore[arg-type]
        (lambda v: min_sum(v, tol=2.0), "min_sum: parameter tol"),
        (lambda v: fang(v, b=0.5), "fang: parameter b"),
        (lambda v: mimic(v, index=-1), "mimic: parameter index"),
    ],
)
def test_direct_calls_validate_parameters(call: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call(random_view())  # type: ignore[operator]


def test_vector_attacks_keep_dtype_and_shape() -> None:
    view = random_view(targets=torch.zeros(2, 20))
    for name in ["sign_flip", "gaussian", "scaled", "random", "zero", "alie", "ipm"]:
        out = make_attack(name).craft(view)
        assert out.shape == (20,) and out.dtype == torch.float32, name
    for name in ["min_max", "min_sum", "fang_median", "mimic"]:
        out = make_attack(name).craft(view)
        assert out.shape == (20,) and out.dtype == torch.float32, name
    assert make_attack("dissensus").craft(view).shape == (2, 20)
