"""IPM, inner product manipulation (Xie, Koyejo and Gupta, UAI 2020)."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from p2pfl.attacks import checks
from p2pfl.attacks.view import AttackView, require_honest


def check_ipm(*, eps: float = 0.1, **_: Any) -> None:
    checks.positive("ipm", "eps", eps)


def ipm(view: AttackView, *, eps: float = 0.1) -> Tensor:
    """IPM: send ``-eps * mean(honest)``.

    Xie et al. choose the Byzantine vector so that its inner product with the true
    mean is negative: ``<-eps * mu, mu> = -eps ||mu||^2 < 0`` whenever ``mu != 0``.
    A small ``eps`` (0.1 in the paper) defeats median and Krum, a large one the
    mean. Our vectors are parameter vectors, so the attack pulls models towards
    ``-eps`` times the honest mean model.

    Needs at least one honest vector; with local knowledge the mean is over the
    attacker's honest neighbours only.
    """
    check_ipm(eps=eps)
    honest = require_honest(view, "ipm")
    return (-eps * honest.mean(dim=0)).to(view.own.dtype)
