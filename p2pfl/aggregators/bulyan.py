"""Bulyan (El Mhamdi, Guerraoui & Rouault, ICML 2018)."""

from __future__ import annotations

import torch
from torch import Tensor

from p2pfl.aggregators._checks import as_batch, check_f, check_finite, unbatch
from p2pfl.aggregators._pairwise import Pairwise
from p2pfl.aggregators.krum import select_lowest_scores

#: Elements of one column chunk of the selected vectors during the trimming step.
CHUNK_ELEMS = 1 << 22


def bulyan(x: Tensor, f: int) -> Tensor:
    """Bulyan on top of Krum (El Mhamdi et al. 2018).

    1. Selection: ``theta = n - 2f`` times, apply Krum to the remaining set ``R``
       and move its choice to the selected set ``S``. Krum on ``R`` uses the
       ``|R| - f - 2`` nearest members of ``R`` (at least 1: the last sets are
       smaller than Krum's own ``2f + 3``).
    2. Aggregation: per coordinate ``k``, with ``m_k`` the median of
       ``{s_k : s in S}`` (mean of the two middle values when ``theta`` is even),
       average the ``beta = theta - 2f`` values ``s_k`` closest to ``m_k`` (ties:
       the smaller value).

    Needs ``n >= 4f + 3``.

    Args:
        x: ``(n, d)`` or batched ``(b, n, d)`` float32/float64 vectors.
        f: number of Byzantine inputs to tolerate.

    Returns:
        ``(d,)`` or ``(b, d)``.

    Example:
        >>> import torch
        >>> bulyan(torch.tensor([[0.0], [1.0], [2.0], [3.0], [4.0], [5.0], [100.0]]), 1)
        tensor([2.])
    """
    x3, batched = as_batch(x, "bulyan")
    b, n, _ = x3.shape
    f = check_f(n, f, "bulyan", lambda k: 4 * k + 3, "4f+3")
    check_finite(x3, "bulyan")
    theta, beta = n - 2 * f, n - 4 * f
    pw = Pairwise.of(x3)
    remaining = torch.ones((b, n), dtype=torch.bool)
    picks = []
    for _ in range(theta):
        chosen = select_lowest_scores(pw, f, 1, remaining)
        idx = chosen.to(torch.int8).argmax(1)
        picks.append(idx)
        remaining[torch.arange(b), idx] = False
    order = torch.stack(picks, 1)  # (b, theta)
    selected = x3[torch.arange(b).unsqueeze(1), order]  # (b, theta, d)
    return unbatch(_closest_to_median_mean(selected, beta), batched)


def _closest_to_median_mean(s: Tensor, beta: int) -> Tensor:
    """Per coordinate, the mean of the ``beta`` values of ``s`` (``(b, t, d)``) closest to their median.

    Sorted, the ``beta`` values closest to the median form a window; among the
    ``t - beta + 1`` windows it is the one with the smallest largest distance to
    the median (the leftmost on ties).
    """
    b, t, d = s.shape
    out = torch.empty((b, d), dtype=s.dtype)
    cc = max(1, CHUNK_ELEMS // max(1, b * t))
    for c0 in range(0, d, cc):
        c1 = min(d, c0 + cc)
        v = torch.sort(s[:, :, c0:c1], dim=1).values  # (b, t, w)
        med = (v[:, (t - 1) // 2] + v[:, t // 2]) / 2
        starts = t - beta + 1
        left = med.unsqueeze(1) - v[:, :starts]  # distance of each window's smallest
        right = v[:, beta - 1 :] - med.unsqueeze(1)  # and largest value
        best = torch.maximum(left, right).argmin(1, keepdim=True)  # (b, 1, w)
        # summed directly, not by prefix differences: an outlier outside the
        # window must not cost the window its precision
        window = best + torch.arange(beta).view(1, beta, 1)
        out[:, c0:c1] = v.gather(1, window).sum(1) / beta
    return out
