"""The (weighted) mean: no robustness, the baseline every robust rule is compared with."""

from __future__ import annotations

import torch
from torch import Tensor

from p2pfl.aggregators._checks import as_batch, check_finite, check_weights, unbatch


def mean(x: Tensor, weights: Tensor | None = None) -> Tensor:
    """Average of the rows of ``x``, optionally weighted.

    ``mean(x, w) = sum_i w_i x_i / sum_i w_i``. With ``w`` a row of a mixing
    matrix (summing to one) this is one step of gossip averaging,
    ``x_i <- sum_j W_ij x_j``.

    Args:
        x: ``(n, d)`` or batched ``(b, n, d)`` float32/float64 vectors.
        weights: ``(n,)`` or ``(b, n)`` non-negative weights with a positive sum;
            ``None`` for the uniform mean.

    Returns:
        ``(d,)`` or ``(b, d)``.

    Example:
        >>> import torch
        >>> mean(torch.tensor([[0.0, 2.0], [2.0, 4.0]]))
        tensor([1., 3.])
    """
    x3, batched = as_batch(x, "mean")
    check_finite(x3, "mean")
    b, n, _ = x3.shape
    if weights is None:
        return unbatch(x3.mean(1), batched)
    w = check_weights(weights, n, b, batched, "mean")
    total = w.sum(1, keepdim=True)
    if bool((total <= 0).any()):
        raise ValueError("mean: weights must have a positive sum")
    coef = (w / total).to(x3.dtype).unsqueeze(1)  # (b, 1, n)
    return unbatch(torch.bmm(coef, x3).squeeze(1), batched)
