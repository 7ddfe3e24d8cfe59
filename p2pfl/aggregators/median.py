"""Coordinate-wise median (Yin, Chen, Kannan & Bartlett, ICML 2018)."""

from __future__ import annotations

from torch import Tensor

from p2pfl.aggregators._checks import as_batch, check_finite, unbatch
from p2pfl.aggregators._network import mean_of_ranks


def median(x: Tensor) -> Tensor:
    """Per coordinate, the median of the ``n`` inputs.

    For odd ``n`` the middle value; for even ``n`` the mean of the two middle
    values (Yin et al. 2018), *not* ``torch.median``'s lower median. Computed by a
    pruned comparator network on whole rows (see :mod:`p2pfl.aggregators._network`),
    exact in the input dtype.

    Args:
        x: ``(n, d)`` or batched ``(b, n, d)`` float32/float64 vectors.

    Returns:
        ``(d,)`` or ``(b, d)``.

    Example:
        >>> import torch
        >>> median(torch.tensor([[1.0], [2.0], [3.0], [10.0]]))
        tensor([2.5000])
    """
    x3, batched = as_batch(x, "median")
    check_finite(x3, "median")
    n = x3.shape[1]
    return unbatch(mean_of_ranks(x3, (n - 1) // 2, n // 2 + 1), batched)
