"""Geometric median by smoothed Weiszfeld (RFA: Pillutla, Kakade & Harchaoui, IEEE TSP 2022)."""

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
from p2pfl.aggregators._pairwise import centered_gram, reference_rows

#: Re-centre the Gram matrix when the centre is this much farther from the result
#: (squared) than the typical input: cancellation could then cost precision.
RECENTER_RATIO = 1e4


def geometric_median(x: Tensor, nu: float = 1e-6, tol: float = 1e-7, max_iter: int = 100) -> Tensor:
    """Approximate ``argmin_z sum_i ||x_i - z||`` with the smoothed Weiszfeld algorithm.

    From ``z_0`` = the mean, repeat ``z <- sum_i b_i x_i / sum_i b_i`` with
    ``b_i = 1 / max(nu, ||x_i - z||)`` (Pillutla et al. 2022, smoothed Weiszfeld
    with uniform weights) until a step moves ``z`` by at most ``tol`` times the
    median distance from the inputs to the new ``z``, or ``max_iter`` iterations.
    (The RFA code stops on the relative change of the objective instead; one far
    outlier dominates that objective and stops the iteration long before ``z``
    settles, while the median distance is a scale set by the majority.)

    Every iterate is a convex combination ``z = sum_i a_i x_i``, so the iteration
    runs on the coefficients ``a`` with distances from a centred Gram matrix
    (``||x_i - z||^2 = G_ii - 2 (G a)_i + a^T G a``): one pass over the data for
    the Gram matrix, one for the final combination, and ``O(n^2)`` per iteration.

    Args:
        x: ``(n, d)`` or batched ``(b, n, d)`` float32/float64 vectors.
        nu: smoothing, > 0: distances below ``nu`` count as ``nu``.
        tol: step, relative to the median input distance, that stops the iteration, >= 0.
        max_iter: most iterations, >= 1.

    Returns:
        ``(d,)`` or ``(b, d)``.

    Example (the outlier at (50, 50) does not drag the result):
        >>> import torch
        >>> x = torch.tensor([[0.0, 0.0], [2.0, 0.0], [0.0, 2.0], [50.0, 50.0]])
        >>> geometric_median(x, tol=0.0)
        tensor([1., 1.])
    """
    x3, batched = as_batch(x, "geometric_median")
    nu = check_positive(nu, "geometric_median", "nu")
    tol = check_positive(tol, "geometric_median", "tol", allow_zero=True)
    max_iter = check_int(max_iter, "geometric_median", "max_iter", 1)
    check_finite(x3, "geometric_median")
    ref = reference_rows(x3)
    gram = centered_gram(x3, ref)
    coef = _weiszfeld(gram, nu, tol, max_iter)
    # Far from every input, the centre would lose the distances' low digits:
    # recentre at the input nearest the result and iterate again.
    far = _far_centre(gram, coef)
    if bool(far.any()):
        near = _nearest_input(gram, coef)
        ref = torch.where(far, near, ref)
        coef = _weiszfeld(centered_gram(x3, ref), nu, tol, max_iter)
    z = torch.bmm(coef.to(x3.dtype).unsqueeze(1), x3).squeeze(1)
    return unbatch(z, batched)


def _sq_dist_to_z(gram: Tensor, coef: Tensor) -> Tensor:
    """``(b, n)`` squared distances from each input to ``z = sum_i coef_i x_i``."""
    g_a = torch.bmm(gram, coef.unsqueeze(-1)).squeeze(-1)
    a_g_a = (coef * g_a).sum(-1, keepdim=True)
    return (gram.diagonal(dim1=-2, dim2=-1) - 2 * g_a + a_g_a).clamp_min_(0)


def _weiszfeld(gram: Tensor, nu: float, tol: float, max_iter: int) -> Tensor:
    """Smoothed Weiszfeld on the coefficients; ``(b, n)`` float64, rows summing to 1.

    Items stop independently (converged items are frozen), so a batched call
    gives each item the result it would get alone.
    """
    b, n, _ = gram.shape
    coef = torch.full((b, n), 1.0 / n, dtype=torch.float64)
    dist = _sq_dist_to_z(gram, coef).sqrt_()
    active = torch.ones(b, dtype=torch.bool)
    for _ in range(max_iter):
        w = 1.0 / dist.clamp_min(nu)
        new = w / w.sum(-1, keepdim=True)
        new_dist = _sq_dist_to_z(gram, new).sqrt_()
        step = new - coef
        moved = torch.bmm(gram, step.unsqueeze(-1)).squeeze(-1).mul_(step).sum(-1)
        done = moved.clamp_min_(0).sqrt_() <= tol * new_dist.median(-1).values
        keep = active.unsqueeze(-1)
        coef = torch.where(keep, new, coef)
        dist = torch.where(keep, new_dist, dist)
        active &= ~done
        if not bool(active.any()):
            break
    return coef


def _far_centre(gram: Tensor, coef: Tensor) -> Tensor:
    """``(b,)`` bool: the Gram centre is much farther from ``z`` than the inputs are."""
    g_a = torch.bmm(gram, coef.unsqueeze(-1)).squeeze(-1)
    centre_sq = (coef * g_a).sum(-1)  # ||z - x_ref||^2
    spread = _sq_dist_to_z(gram, coef).median(-1).values
    return centre_sq > RECENTER_RATIO * spread.clamp_min(torch.finfo(torch.float64).tiny)


def _nearest_input(gram: Tensor, coef: Tensor) -> Tensor:
    return _sq_dist_to_z(gram, coef).argmin(-1)
