"""Coordinate-wise trimmed mean (Yin, Chen, Kannan & Bartlett, ICML 2018)."""

from __future__ import annotations

from torch import Tensor

from p2pfl.aggregators._checks import as_batch, check_f, check_finite, unbatch
from p2pfl.aggregators._network import mean_of_ranks


def trimmed_mean(x: Tensor, f: int) -> Tensor:
    """Per coordinate, drop the ``f`` largest and ``f`` smallest values and average the rest.

    ``TM(x)_k = (1 / (n - 2f)) * sum_{r = f}^{n - f - 1} x_(r),k`` where ``x_(r),k``
    is the ``r``-th smallest value of coordinate ``k``. Needs ``n > 2f``. The
    middle values are found by a pruned comparator network (exact selection);
    the sum is taken in the input dtype.

    Args:
        x: ``(n, d)`` or batched ``(b, n, d)`` float32/float64 vectors.
        f: number of values trimmed at each end, ``0 <= 2f < n``.

    Returns:
        ``(d,)`` or ``(b, d)``.

    Example:
        >>> import torch
        >>> trimmed_mean(torch.tensor([[1.0], [2.0], [3.0], [100.0]]), 1)
        tensor([2.5000])
    """
    x3, batched = as_batch(x, "trimmed_mean")
    n = x3.shape[1]
    f = check_f(n, f, "trimmed_mean", lambda k: 2 * k + 1, "2f+1")
    check_finite(x3, "trimmed_mean")
    return unbatch(mean_of_ranks(x3, f, n - f), batched)
