"""Pairwise squared distances for the distance-based rules, fast and exact where it matters.

Krum, Multi-Krum, Bulyan and NNM only ever *compare* squared distances
``||x_i - x_j||^2``; the geometric median needs them at a moving point. All of
them are computed here from one Gram matrix instead of ``n^2`` passes over the
data:

- Distances are translation invariant, so the vectors are first centred at a
  reference input ``r`` close to the bulk of the data (the medoid of a strided
  subsample of the coordinates). Centred, the Gram entries have the magnitude of
  the distances themselves, so ``D_ij = G_ii + G_jj - 2 G_ij`` suffers no
  catastrophic cancellation even when the vectors sit far from the origin.
- ``G`` is accumulated in float64 over column chunks, each chunk a float32 (or
  input-dtype) matrix product: one streaming pass over ``x``.
- Every entry carries an error bound ``err_ij = (8 + sqrt(C)) u (G_ii + G_jj)``
  (``u`` the unit roundoff, ``C`` the chunk length): rounding of the centred
  values plus the accumulation error of the chunked product, with the usual
  ``sqrt(C)`` growth of rounding in long sums (a statistical, not a worst-case,
  bound; measured errors sit about 100 times below it). It grows when the
  centre is far from the vectors (e.g. a Byzantine reference), which is exactly
  when cancellation could bite.
- Selections (the ``m`` lowest scores, the ``k`` nearest neighbours) are made
  *certain*: an input whose interval ``[value - bound, value + bound]`` leaves
  its membership undecided gets its row of distances recomputed exactly
  (float64 differences) and the choice is made again. On real data this rarely
  triggers; it makes the selection the one exact distances give, ties broken
  towards the lower index.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor

#: Bytes of one chunk of the centred inputs fed to a matrix product: large, so a
#: pass opens few parallel regions (they stall when other processes share the cores).
GRAM_CHUNK_BYTES = 16 << 20
#: Coordinates kept by the strided subsample that picks the centring reference.
SUBSAMPLE = 2048
#: Multiply-adds allowed for the subsample Gram matrices of a whole batch.
SUBSAMPLE_BUDGET = 1 << 26
#: Bytes of one float64 chunk when recomputing distance rows exactly.
EXACT_CHUNK_BYTES = 4 << 20
#: Elements of the boolean (rows, n, n) comparison table of one certainty check.
CERTAINTY_CHUNK_ELEMS = 1 << 22


def unit_roundoff(dtype: torch.dtype) -> float:
    return float(torch.finfo(dtype).eps) / 2


def reference_rows(x: Tensor) -> Tensor:
    """``(b,)`` index of the input to centre at: the medoid on a strided subsample.

    The medoid (least sum of distances, not squared) is robust: with an honest
    majority it is an honest vector, whatever the outliers. The subsample only
    has to land near the bulk of the data; precision comes from the later steps,
    so its size shrinks with the batch to keep this step cheap.
    """
    b, n, d = x.shape
    if n == 1:
        return torch.zeros(b, dtype=torch.int64)
    keep = max(16, min(SUBSAMPLE, SUBSAMPLE_BUDGET // (b * n * n)))
    xs = x[:, :, :: max(1, d // keep)].to(torch.float64)
    xs = xs - xs.mean(1, keepdim=True)
    gram = torch.bmm(xs, xs.transpose(1, 2))
    diag = gram.diagonal(dim1=-2, dim2=-1)
    sq = (diag.unsqueeze(-1) + diag.unsqueeze(-2) - 2 * gram).clamp_min_(0)
    return sq.sqrt_().sum(-1).argmin(-1)


def gram_chunk(b: int, n: int, itemsize: int) -> int:
    """Columns per chunk of :func:`centered_gram`."""
    return max(256, GRAM_CHUNK_BYTES // (itemsize * max(1, b * n)))


def centered_gram(x: Tensor, ref: Tensor) -> Tensor:
    """``(b, n, n)`` float64 Gram matrix of ``x_i - x_ref`` (one pass over ``x``)."""
    b, n, d = x.shape
    r = x[torch.arange(b), ref]  # (b, d) copy: x itself is never modified
    gram = torch.zeros((b, n, n), dtype=torch.float64)
    cc = gram_chunk(b, n, x.element_size())
    buf = torch.empty((b, n, min(cc, d)), dtype=x.dtype)
    prod = torch.empty((b, n, n), dtype=x.dtype)
    for c0 in range(0, d, cc):
        c1 = min(d, c0 + cc)
        blk = buf[:, :, : c1 - c0]
        torch.sub(x[:, :, c0:c1], r[:, None, c0:c1], out=blk)
        torch.bmm(blk, blk.transpose(1, 2), out=prod)
        gram += prod
    return gram


def exact_rows(x: Tensor, item: int, rows: list[int]) -> Tensor:
    """``(len(rows), n)`` squared distances from inputs ``rows`` of batch item ``item``.

    Differences and sums in float64: exact up to float64 rounding.
    """
    xi = x[item]
    n, d = xi.shape
    out = torch.zeros((len(rows), n), dtype=torch.float64)
    cc = max(256, EXACT_CHUNK_BYTES // (8 * n * max(1, len(rows))))
    for c0 in range(0, d, cc):
        blk = xi[:, c0 : min(d, c0 + cc)].to(torch.float64)
        diff = blk.unsqueeze(0) - blk[rows].unsqueeze(1)  # (rows, n, w)
        out += diff.square_().sum(-1)
    return out


@dataclass
class Pairwise:
    """Squared distances of every batch item with per-entry error bounds.

    ``sq`` and ``err`` are ``(b, n, n)`` float64; ``exact[b, i]`` marks rows that
    were recomputed exactly (their ``err`` row and column are zero).
    """

    x: Tensor
    sq: Tensor
    err: Tensor
    exact: Tensor = field(init=False)

    def __post_init__(self) -> None:
        self.exact = torch.zeros(self.sq.shape[:2], dtype=torch.bool)

    @classmethod
    def of(cls, x: Tensor) -> Pairwise:
        b, n, d = x.shape
        gram = centered_gram(x, reference_rows(x))
        diag = gram.diagonal(dim1=-2, dim2=-1)
        total = diag.unsqueeze(-1) + diag.unsqueeze(-2)
        sq = (total - 2 * gram).clamp_min_(0)
        cc = min(d, gram_chunk(b, n, x.element_size()))
        err = total * ((8 + math.sqrt(cc)) * unit_roundoff(x.dtype))
        eye = torch.eye(n, dtype=torch.bool)
        sq.masked_fill_(eye, 0.0)
        err.masked_fill_(eye, 0.0)
        return cls(x, sq, err)

    def refine(self, item: int, rows: list[int]) -> None:
        """Replace rows (and the matching columns) of item ``item`` by exact values."""
        rows = [r for r in rows if not bool(self.exact[item, r])]
        if not rows:
            return
        values = exact_rows(self.x, item, rows)
        idx = torch.tensor(rows)
        self.sq[item, idx, :] = values
        self.sq[item, :, idx] = values.T
        self.err[item, idx, :] = 0.0
        self.err[item, :, idx] = 0.0
        self.exact[item, idx] = True


def certain_lowest(values: Tensor, bounds: Tensor, mask: Tensor, m: int) -> tuple[Tensor, Tensor]:
    """Which entries are surely among the ``m`` lowest, and which are undecided.

    ``values``, ``bounds``: ``(r, n)`` float64, the true value of entry ``i`` lies
    in ``[values_i - bounds_i, values_i + bounds_i]``; ``mask`` ``(r, n)`` marks the
    candidates. Order is by (value, index): ties go to the lower index. Returns
    ``(surely_in, undecided)`` boolean ``(r, n)`` tensors; when nothing is
    undecided, ``surely_in`` has exactly ``m`` entries per row.
    """
    r, n = values.shape
    inf = torch.tensor(math.inf, dtype=values.dtype)
    lo = torch.where(mask, values - bounds, inf)
    hi = torch.where(mask, values + bounds, inf)
    idx = torch.arange(n)
    lower_index = idx.unsqueeze(1) < idx.unsqueeze(0)  # [j, i]: j < i
    not_self = ~torch.eye(n, dtype=torch.bool)
    others = mask.unsqueeze(-1) & not_self  # [r, j, i]: j is another candidate
    surely_in = torch.empty((r, n), dtype=torch.bool)
    surely_out = torch.empty((r, n), dtype=torch.bool)
    step = max(1, CERTAINTY_CHUNK_ELEMS // (n * n))
    for r0 in range(0, r, step):
        lo_j = lo[r0 : r0 + step, :, None]
        hi_j = hi[r0 : r0 + step, :, None]
        lo_i = lo[r0 : r0 + step, None, :]
        hi_i = hi[r0 : r0 + step, None, :]
        # j may come before i / j surely comes before i, in (value, index) order
        other = others[r0 : r0 + step]
        may = ((lo_j < hi_i) | ((lo_j == hi_i) & lower_index)) & other
        must = ((hi_j < lo_i) | ((hi_j == lo_i) & lower_index)) & other
        surely_in[r0 : r0 + step] = may.sum(1) < m
        surely_out[r0 : r0 + step] = must.sum(1) >= m
    surely_in &= mask
    undecided = mask & ~surely_in & ~surely_out
    return surely_in, undecided
