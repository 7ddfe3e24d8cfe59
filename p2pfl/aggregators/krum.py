"""Krum and Multi-Krum (Blanchard, El Mhamdi, Guerraoui & Stainer, NeurIPS 2017)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from p2pfl.aggregators._checks import as_batch, check_f, check_finite, check_int, unbatch
from p2pfl.aggregators._pairwise import Pairwise, certain_lowest


def krum_scores(pw: Pairwise, f: int, members: Tensor) -> tuple[Tensor, Tensor]:
    """Krum scores of every input among ``members`` (``(b, n)`` bool), with error bounds.

    ``score(i) = sum of ||x_i - x_j||^2 over the k members j != i closest to x_i``,
    ``k = |members| - f - 2`` (Blanchard et al. 2017), and at least 1 (Bulyan
    applies Krum to shrinking sets). The bound is the sum of the entries' bounds:
    the sum of the k smallest of perturbed values moves by at most that much.
    """
    _, n = members.shape
    k = max(int(members[0].sum()) - f - 2, 1)
    excluded = ~members.unsqueeze(1) | torch.eye(n, dtype=torch.bool)
    sq = pw.sq.masked_fill(excluded, math.inf)
    scores = torch.topk(sq, k, dim=-1, largest=False).values.sum(-1)
    bounds = pw.err.masked_fill(excluded, 0.0).sum(-1)
    return scores, bounds


def select_lowest_scores(pw: Pairwise, f: int, m: int, members: Tensor) -> Tensor:
    """``(b, n)`` bool: the ``m`` members of lowest Krum score, decided exactly.

    Approximate scores decide most inputs; undecided ones get their distance rows
    recomputed exactly until the choice is certain (ties: lower index first).
    """
    while True:
        scores, bounds = krum_scores(pw, f, members)
        chosen, undecided = certain_lowest(scores, bounds, members, m)
        if not bool(undecided.any()):
            return chosen
        for item in undecided.any(1).nonzero().flatten().tolist():
            rows = undecided[item].nonzero().flatten().tolist()
            if all(bool(pw.exact[item, i]) for i in rows):
                rows = members[item].nonzero().flatten().tolist()  # make the whole set exact
            pw.refine(item, rows)


def krum(x: Tensor, f: int) -> Tensor:
    """The input with the lowest Krum score (Blanchard et al. 2017).

    ``score(i) = sum_{j in N_i} ||x_i - x_j||^2`` where ``N_i`` are the ``n - f - 2``
    inputs closest to ``x_i`` (``j != i``); Krum returns ``x_{i*}``,
    ``i* = argmin_i score(i)``, ties to the lower index. Needs ``n >= 2f + 3``.
    Distances come from one centred Gram matrix with exact recomputation of the
    undecided candidates (:mod:`p2pfl.aggregators._pairwise`), so the choice is
    the one exact arithmetic makes.

    Args:
        x: ``(n, d)`` or batched ``(b, n, d)`` float32/float64 vectors.
        f: number of Byzantine inputs to tolerate.

    Returns:
        ``(d,)`` or ``(b, d)``: one of the inputs.

    Example:
        >>> import torch
        >>> krum(torch.tensor([[0.0], [1.0], [2.0], [3.0], [100.0]]), 1)
        tensor([1.])
    """
    x3, batched = as_batch(x, "krum")
    b, n, _ = x3.shape
    f = check_f(n, f, "krum", lambda k: 2 * k + 3, "2f+3")
    check_finite(x3, "krum")
    members = torch.ones((b, n), dtype=torch.bool)
    chosen = select_lowest_scores(Pairwise.of(x3), f, 1, members)
    idx = chosen.to(torch.int8).argmax(1)
    return unbatch(x3[torch.arange(b), idx], batched)


def multi_krum(x: Tensor, f: int, m: int) -> Tensor:
    """Mean of the ``m`` inputs with the lowest Krum scores (Blanchard et al. 2017).

    Scores as in :func:`krum`; ``m = 1`` is Krum, ``m = n - f`` the usual choice.
    Needs ``n >= 2f + 3`` and ``1 <= m <= n``.

    Args:
        x: ``(n, d)`` or batched ``(b, n, d)`` float32/float64 vectors.
        f: number of Byzantine inputs to tolerate.
        m: number of inputs averaged.

    Returns:
        ``(d,)`` or ``(b, d)``.

    Example:
        >>> import torch
        >>> multi_krum(torch.tensor([[0.0], [1.0], [2.0], [3.0], [100.0]]), 1, 3)
        tensor([1.])
    """
    x3, batched = as_batch(x, "multi_krum")
    b, n, _ = x3.shape
    f = check_f(n, f, "multi_krum", lambda k: 2 * k + 3, "2f+3")
    m = check_int(m, "multi_krum", "m", 1)
    if m > n:
        raise ValueError(f"multi_krum: m={m} exceeds the number of inputs n={n}")
    check_finite(x3, "multi_krum")
    members = torch.ones((b, n), dtype=torch.bool)
    chosen = select_lowest_scores(Pairwise.of(x3), f, m, members)
    coef = (chosen.to(x3.dtype) / m).unsqueeze(1)  # (b, 1, n)
    return unbatch(torch.bmm(coef, x3).squeeze(1), batched)
