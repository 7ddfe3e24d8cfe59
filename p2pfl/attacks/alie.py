"""ALIE, "A Little Is Enough" (Baruch, Baruch and Goldberg, NeurIPS 2019)."""

from __future__ import annotations

from statistics import NormalDist
from typing import Any

from torch import Tensor

from p2pfl.attacks import checks
from p2pfl.attacks.view import AttackView, require_honest


def alie_z(n: int, f: int) -> float:
    """Baruch et al.'s ``z_max = Phi^{-1}((n - s) / n)`` with ``s = floor(n/2 + 1) - f``.

    ``s`` is the number of honest workers the attackers must win over to hold a
    majority; ``z_max`` is the largest shift, in standard deviations, that still
    leaves ``s`` honest workers farther from the mean than the Byzantine value.
    ``z_max`` is negative when ``f`` is small (``s > n/2``) and undefined unless
    ``0 < (n - s)/n < 1`` (``n <= 2`` with ``f = 0``, or ``f >= floor(n/2 + 1)``):
    a ``ValueError`` naming ``n`` and ``f`` then asks for an explicit ``z``.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"alie: n must be an integer >= 1, got {n!r}")
    if isinstance(f, bool) or not isinstance(f, int) or f < 0:
        raise ValueError(f"alie: f must be an integer >= 0, got {f!r}")
    s = n // 2 + 1 - f
    p = (n - s) / n
    if not 0.0 < p < 1.0:
        raise ValueError(
            f"alie: z_max = Phi^-1((n - s)/n) is undefined for n={n}, f={f} "
            f"(s = floor(n/2 + 1) - f = {s}); set the parameter z explicitly"
        )
    return NormalDist().inv_cdf(p)


def check_alie(*, z: float | None = None, **_: Any) -> None:
    if z is not None:
        checks.finite("alie", "z", z)


def alie(view: AttackView, *, z: float | None = None) -> Tensor:
    """ALIE: send ``mu_j + z * sigma_j`` in every coordinate ``j``.

    ``mu`` and ``sigma`` are the coordinate-wise mean and standard deviation of the
    honest vectors the attacker sees (``view.honest``; the unbiased estimate, and
    ``sigma = 0`` when there is a single honest vector, so the attack then sends
    it). ``z`` defaults to Baruch et al.'s ``z_max`` for the target's ``view.n``
    and ``view.f`` (:func:`alie_z`); a given ``z`` replaces it (ClippedGossip's
    "ALIE10" uses ``z = 10``).

    Sign: implementations use either ``mu + z sigma`` or ``mu - z sigma``; we add
    ``z * sigma``, and a negative ``z`` shifts the other way. The shift stays within ``|z|`` standard
    deviations of the honest mean, which is what lets it pass distance- and
    order-statistics-based defences.

    Needs at least two honest vectors: with one, ``sigma = 0`` and it sends a copy
    of that vector (with local knowledge, an attacker with a single honest
    neighbour does exactly what an honest node would; the simulator warns).
    Baruch et al.'s and ClippedGossip's attackers see every honest vector
    (``byzantine.knowledge = "omniscient"``).
    """
    check_alie(z=z)
    honest = require_honest(view, "alie")
    z_used = alie_z(view.n, view.f) if z is None else z
    mu = honest.mean(dim=0)
    if honest.shape[0] < 2:
        return mu.to(view.own.dtype)
    sigma = honest.std(dim=0, correction=1)
    return (mu + z_used * sigma).to(view.own.dtype)
