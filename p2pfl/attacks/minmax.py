"""Min-Max and Min-Sum (Shejwalkar and Houmansadr, "Manipulating the Byzantine:
optimizing model poisoning attacks and defenses for federated learning", NDSS 2021).

Both send ``m = mu + gamma * p``: the honest mean ``mu`` moved along a perturbation
``p`` as far as possible while ``m`` still looks like an honest vector:

- Min-Max: ``max_i ||m - x_i|| <= max_{i,j} ||x_i - x_j||``;
- Min-Sum: ``sum_i ||m - x_i||^2 <= max_i sum_j ||x_i - x_j||^2``;

over the honest vectors ``x_1..x_h`` the attacker sees. Perturbations (the paper's
three): ``unit_vec`` ``p = -mu / ||mu||``, ``std`` ``p = -sigma`` (coordinate-wise
standard deviation), ``sign`` ``p = -sign(mu)``.

``gamma`` is found by bisection, as in the paper. Writing ``dev_i = mu - x_i``,
``||m - x_i||^2 = ||dev_i||^2 + 2 gamma <p, dev_i> + gamma^2 ||p||^2`` is a convex
quadratic in ``gamma`` that satisfies either condition at ``gamma = 0`` (the mean
lies in the honest convex hull), so the feasible set is an interval ``[0, gamma*]``
and bisection on it finds the largest feasible ``gamma`` to a relative tolerance
``tol``. The quadratic's coefficients are computed once in float64, so each step
costs ``O(h)`` instead of ``O(h d)``.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
from torch import Tensor

from p2pfl.attacks import checks
from p2pfl.attacks.view import AttackView, require_honest

Perturbation = Literal["unit_vec", "std", "sign"]
PERTURBATIONS: tuple[Perturbation, ...] = ("unit_vec", "std", "sign")
Condition = Literal["max", "sum"]

_MAX_DOUBLINGS = 2100  # 2**2100 overflows float64 to inf, which is infeasible


def perturbation_vector(honest: Tensor, perturbation: str) -> Tensor:
    """``p`` (float64, (d,)) for the honest vectors ``(h, d)``; zero where undefined."""
    checks.one_of("min_max/min_sum", "perturbation", perturbation, PERTURBATIONS)
    x = honest.to(torch.float64)
    mu = x.mean(dim=0)
    if perturbation == "unit_vec":
        norm = torch.linalg.vector_norm(mu)
        return -mu / norm if norm > 0 else torch.zeros_like(mu)
    if perturbation == "std":
        if x.shape[0] < 2:
            return torch.zeros_like(mu)
        return -x.std(dim=0, correction=1)
    return -torch.sign(mu)


def search_gamma(honest: Tensor, p: Tensor, condition: Condition, tol: float = 1e-6) -> float:
    """Largest ``gamma >= 0`` with ``mu + gamma p`` meeting the Min-Max or Min-Sum condition.

    Returns ``lo`` with ``lo`` feasible and some ``hi`` infeasible, ``hi - lo <= tol * hi``.
    Returns 0 when no positive step is feasible (``p = 0`` or identical honest vectors).
    """
    x = honest.to(torch.float64)
    p = p.to(torch.float64)
    dev = x.mean(dim=0, keepdim=True) - x
    a = float(p @ p)
    b = dev @ p
    c = (dev * dev).sum(dim=1)
    dist2 = torch.cdist(x, x).square()
    bound = float(dist2.max()) if condition == "max" else float(dist2.sum(dim=1).max())

    def feasible(gamma: float) -> bool:
        q = c + 2.0 * gamma * b + gamma * gamma * a
        value = float(q.max()) if condition == "max" else float(q.sum())
        return value <= bound

    if a <= 0.0 or bound <= 0.0 or not feasible(0.0):
        return 0.0
    lo, hi = 0.0, math.sqrt(bound / a)
    for _ in range(_MAX_DOUBLINGS):
        if not feasible(hi):
            break
        lo, hi = hi, 2.0 * hi
    while hi - lo > tol * hi:
        mid = 0.5 * (lo + hi)
        if feasible(mid):
            lo = mid
        else:
            hi = mid
    return lo


def _check(attack: str, perturbation: str, tol: float) -> None:
    checks.one_of(attack, "perturbation", perturbation, PERTURBATIONS)
    if not (math.isfinite(tol) and 0.0 < tol < 1.0):
        raise ValueError(f"{attack}: parameter tol must be in (0, 1), got {tol!r}")


def check_min_max(*, perturbation: str = "unit_vec", tol: float = 1e-6, **_: Any) -> None:
    _check("min_max", perturbation, tol)


def check_min_sum(*, perturbation: str = "unit_vec", tol: float = 1e-6, **_: Any) -> None:
    _check("min_sum", perturbation, tol)


def _craft(
    view: AttackView, attack: str, condition: Condition, perturbation: str, tol: float
) -> Tensor:
    _check(attack, perturbation, tol)
    honest = require_honest(view, attack)
    p = perturbation_vector(honest, perturbation)
    gamma = search_gamma(honest, p, condition, tol)
    mu = honest.to(torch.float64).mean(dim=0)
    return (mu + gamma * p).to(view.own.dtype)


def min_max(
    view: AttackView, *, perturbation: Perturbation = "unit_vec", tol: float = 1e-6
) -> Tensor:
    """Min-Max: ``mu + gamma p`` with the largest ``gamma`` such that the farthest honest
    vector is no farther than the two most distant honest vectors are from each other.

    Needs at least two honest vectors: with one, ``gamma = 0`` and it sends a copy."""
    return _craft(view, "min_max", "max", perturbation, tol)


def min_sum(
    view: AttackView, *, perturbation: Perturbation = "unit_vec", tol: float = 1e-6
) -> Tensor:
    """Min-Sum: ``mu + gamma p`` with the largest ``gamma`` such that the sum of squared
    distances to the honest vectors is at most the largest such sum of an honest vector.

    Needs at least two honest vectors: with one, ``gamma = 0`` and it sends a copy."""
    return _craft(view, "min_sum", "sum", perturbation, tol)
