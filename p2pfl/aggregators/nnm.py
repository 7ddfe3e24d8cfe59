"""Nearest-neighbour mixing, NNM (Allouah, Farhadkhani, Guerraoui, Gupta, Pinot & Stephan, AISTATS 2023)."""

from __future__ import annotations

import torch
from torch import Tensor

from p2pfl.aggregators._checks import as_batch, check_f, check_finite, unbatch
from p2pfl.aggregators._pairwise import Pairwise, certain_lowest


def nnm(x: Tensor, f: int) -> Tensor:
    """Replace every input by the mean of its ``n - f`` nearest inputs, itself included.

    ``y_i = (1 / (n - f)) * sum_{j in N_i} x_j`` where ``N_i`` holds the ``n - f``
    inputs closest to ``x_i`` (``x_i`` itself, at distance 0, among them; ties to
    the lower index). A pre-aggregation step: apply any rule to the result
    (Allouah et al. 2023). Neighbour sets are decided exactly (undecided rows get
    their distances recomputed, see :mod:`p2pfl.aggregators._pairwise`). Needs
    ``n > 2f``.

    Args:
        x: ``(n, d)`` or batched ``(b, n, d)`` float32/float64 vectors.
        f: number of Byzantine inputs to tolerate.

    Returns:
        The mixed vectors, same shape as ``x``.

    Example:
        >>> import torch
        >>> nnm(torch.tensor([[0.0], [1.0], [2.0], [100.0]]), 1)
        tensor([[ 1.0000],
                [ 1.0000],
                [ 1.0000],
                [34.3333]])
    """
    x3, batched = as_batch(x, "nnm")
    b, n, _ = x3.shape
    f = check_f(n, f, "nnm", lambda k: 2 * k + 1, "2f+1")
    check_finite(x3, "nnm")
    pw = Pairwise.of(x3)
    members = torch.ones((b * n, n), dtype=torch.bool)
    while True:
        near, undecided = certain_lowest(
            pw.sq.reshape(b * n, n), pw.err.reshape(b * n, n), members, n - f
        )
        if not bool(undecided.any()):
            break
        rows = undecided.any(1).nonzero().flatten().tolist()
        for item in sorted({r // n for r in rows}):
            pw.refine(item, [r % n for r in rows if r // n == item])
    mix = near.reshape(b, n, n).to(x3.dtype) / (n - f)
    return unbatch(torch.bmm(mix, x3), batched)
