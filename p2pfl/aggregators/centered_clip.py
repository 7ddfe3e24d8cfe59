"""Centered clipping (Karimireddy, He & Jaggi, ICML 2021)."""

from __future__ import annotations

import torch
from torch import Tensor

from p2pfl.aggregators._checks import (
    as_batch,
    check_finite,
    check_int,
    check_positive,
    unbatch,
)


def clip_factors(diff: Tensor, tau: Tensor) -> Tensor:
    """``min(1, tau / ||diff_i||)`` for ``diff`` ``(b, n, d)`` and ``tau`` ``(b, 1)``; 1 at zero."""
    norms = torch.linalg.vector_norm(diff, dim=-1)
    return torch.where(norms > tau, tau / norms.clamp_min(torch.finfo(diff.dtype).tiny), 1.0)


def centered_clip(x: Tensor, center: Tensor, tau: float, iters: int = 1) -> Tensor:
    """Iterative centered clipping from ``center`` (Karimireddy et al. 2021).

    ``v_0 = center``; ``L = iters`` times: ``v <- v + (1/n) sum_i clip(x_i - v, tau)``
    with ``clip(z, tau) = z * min(1, tau / ||z||)``. Each step moves ``v`` by at
    most ``tau``.

    Args:
        x: ``(n, d)`` or batched ``(b, n, d)`` float32/float64 vectors.
        center: ``(d,)`` or ``(b, d)`` starting point (e.g. the previous aggregate,
            or the node's own vector).
        tau: clipping radius, > 0.
        iters: number of clipping steps ``L``, >= 1.

    Returns:
        ``(d,)`` or ``(b, d)``.

    Example:
        >>> import torch
        >>> x = torch.tensor([[1.0, 0.0], [1.0, 0.0], [100.0, 0.0]])
        >>> centered_clip(x, torch.zeros(2), tau=3.0)
        tensor([1.6667, 0.0000])
    """
    x3, batched = as_batch(x, "centered_clip")
    b, n, d = x3.shape
    if not isinstance(center, Tensor):
        raise ValueError(
            f"centered_clip: center must be a torch.Tensor, got {type(center).__name__}"
        )
    expected = (b, d) if batched else (d,)
    if tuple(center.shape) != expected:
        raise ValueError(
            f"centered_clip: center must have shape {expected} to match x of shape "
            f"{tuple(x.shape)}, got {tuple(center.shape)}"
        )
    tau = check_positive(tau, "centered_clip", "tau")
    iters = check_int(iters, "centered_clip", "iters", 1)
    check_finite(x3, "centered_clip")
    check_finite(center, "centered_clip", "center")
    v = center.reshape(b, d).to(x3.dtype)
    radius = torch.full((b, 1), tau, dtype=x3.dtype)
    for _ in range(iters):
        diff = x3 - v.unsqueeze(1)
        coef = (clip_factors(diff, radius) / n).unsqueeze(1)  # (b, 1, n)
        v = v + torch.bmm(coef, diff).squeeze(1)
    return unbatch(v, batched)
