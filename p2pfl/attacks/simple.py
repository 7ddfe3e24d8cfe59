"""Attacks that need nothing but the node's own vector: sign flip, scaling, noise, zero, silence.

They see no other node's vector, so any knowledge setting serves them.

Our nodes exchange parameter vectors, so "what an honest node would send" is the
model ``own`` after local training, and these attacks transform that vector.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from p2pfl.attacks import checks
from p2pfl.attacks.view import AttackView


def check_sign_flip(*, scale: float = 1.0, **_: Any) -> None:
    checks.positive("sign_flip", "scale", scale)


def sign_flip(view: AttackView, *, scale: float = 1.0) -> Tensor:
    """Sign flip: send ``-scale * own``, the negation of what an honest node would send.

    The classical sign-flipping attack negates the honest *gradient* (e.g. Allen-Zhu
    et al., ICLR 2021; Karimireddy et al., ICML 2021). Our nodes exchange parameter
    vectors, so this negates the honest *model* ``own``; ``scale > 0`` amplifies it.
    For ``own = [1, -2]`` and ``scale = 2`` the node sends ``[-2, 4]``.
    """
    check_sign_flip(scale=scale)
    return -scale * view.own


def check_scaled(*, lam: float = 10.0, **_: Any) -> None:
    checks.finite("scaled", "lam", lam)


def scaled(view: AttackView, *, lam: float = 10.0) -> Tensor:
    """Scaling attack: send ``lam * own`` (``lam`` is the paper's lambda, a Python keyword).

    A large ``lam`` is the boosting used by model-replacement attacks (Bagdasaryan
    et al., AISTATS 2020, send ``lam * (x - G) + G``; here the vector itself is scaled).
    """
    check_scaled(lam=lam)
    return lam * view.own


def check_gaussian(*, sigma: float = 1.0, **_: Any) -> None:
    checks.non_negative("gaussian", "sigma", sigma)


def gaussian(view: AttackView, *, sigma: float = 1.0, around_own: bool = False) -> Tensor:
    """Gaussian attack: ``N(0, sigma^2 I)`` per coordinate, or ``own + N(0, sigma^2 I)``.

    With ``around_own=False`` (the default, as in Blanchard et al., NeurIPS 2017,
    Section 5) the node sends pure noise; with ``around_own=True`` it adds the noise
    to the vector an honest node would send, a stealthier variant. Noise is drawn
    from ``view.generator``.
    """
    check_gaussian(sigma=sigma)
    g = view.generator
    noise = torch.randn(view.d, generator=g, device=g.device, dtype=view.own.dtype)
    noise = sigma * noise.to(view.own.device)
    return view.own + noise if around_own else noise


def check_random(*, a: float = 1.0, **_: Any) -> None:
    checks.non_negative("random", "a", a)


def random(view: AttackView, *, a: float = 1.0) -> Tensor:
    """Random attack: each coordinate uniform in ``[-a, a]``, drawn from ``view.generator``."""
    check_random(a=a)
    g = view.generator
    u = torch.rand(view.d, generator=g, device=g.device, dtype=view.own.dtype)
    return (a * (2.0 * u - 1.0)).to(view.own.device)


def zero(view: AttackView) -> Tensor:
    """Zero attack: send the all-zero vector."""
    return torch.zeros_like(view.own)


def silent(view: AttackView) -> Tensor:
    """Silent (omission) attack: the node sends nothing.

    Callers check ``kind == "silent"`` and send no message; this function exists so
    the spec has a callable and returns no rows (``(0, d)``).
    """
    return view.own.new_zeros((0, view.d))
