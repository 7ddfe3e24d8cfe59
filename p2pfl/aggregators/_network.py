"""Order statistics per coordinate with comparator networks on whole rows.

The coordinate-wise median and trimmed mean need, for every coordinate, some
ranks of ``n`` values. ``torch.median(x, 0)`` / ``torch.sort(x, 0)`` do this with a
generic per-column algorithm; for the small ``n`` of a neighbourhood it is much
faster to run a *comparator network* on whole rows: every comparator is one
``torch.minimum`` and one ``torch.maximum`` over row vectors, which vectorise
perfectly.

- The network is Batcher's odd-even merge sort (Knuth, TAOCP vol. 3, 5.3.4),
  generated for any ``n``.
- It is pruned backwards from the ranks we need: a comparator none of whose
  outputs is needed is dropped, one with a single needed output costs a single
  ``minimum`` or ``maximum``, and one whose two outputs only enter the final sum
  is dropped too (swapping two summands does not change a sum).
- Rows are processed in blocks sized so the working buffers stay in cache, and
  every op writes into preallocated buffers (``out=``), reusing a buffer as soon
  as the value it holds is dead. A block is large enough (:data:`BLOCK_ELEMS`)
  that each op spreads over torch's intra-op threads and the per-op dispatch cost
  stays small against the work.

The result is exact: a network only moves values, and the final mean of the
selected ranks is computed in the input dtype.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

#: Largest ``n`` handled by a network; beyond it a chunked ``torch.sort`` is used.
NETWORK_MAX_N = 128
#: Bytes of the working buffers of one block: small enough for the last-level cache.
CHUNK_BYTES = 8 << 20
#: Elements of one block row, at most. Measured on 2 cores (``benchmarks/bench_aggregators.py``
#: and the simulator's (208, 5, 4810) median): 2-3x faster than 32768-element blocks
#: shared among Python threads, whose per-op overhead dominated.
BLOCK_ELEMS = 131072
MIN_BLOCK_ELEMS = 4096
#: Bytes of a chunk for the ``torch.sort`` fallback.
SORT_CHUNK_BYTES = 32 << 20

Step = tuple[Callable[..., Tensor], int, int, int]  # (op, out slot, in slot a, in slot b)


def batcher_layers(n: int) -> list[list[tuple[int, int]]]:
    """Comparators ``(i, j)``, ``i < j`` (min to ``i``), of Batcher's odd-even merge sort.

    Grouped in layers of disjoint comparators. Valid for any ``n`` (the network
    for the next power of two with the comparators touching wires ``>= n``
    removed, generated directly).
    """
    layers: list[list[tuple[int, int]]] = []
    p = 1
    while p < n:
        k = p
        while k >= 1:
            layer = []
            for j in range(k % p, n - k, 2 * k):
                for i in range(min(k, n - j - k)):
                    if (i + j) // (2 * p) == (i + j + k) // (2 * p):
                        layer.append((i + j, i + j + k))
            if layer:
                layers.append(layer)
            k //= 2
        p *= 2
    return layers


@dataclass(frozen=True)
class Program:
    """A pruned network compiled to ops on slots.

    Slots ``0..n-1`` are the input rows (read only); slots ``n..n+nbuf-1`` are
    scratch rows. ``outputs`` are the slots holding the requested ranks at the end.
    """

    n: int
    steps: tuple[Step, ...]
    nbuf: int
    outputs: tuple[int, ...]


def _prune(n: int, ranks: frozenset[int]) -> list[tuple[str, int, int]]:
    """Backward pass: the ops needed for the sum of the values at ``ranks``."""
    state: dict[int, str] = dict.fromkeys(ranks, "sum")
    ops: list[tuple[str, int, int]] = []
    for layer in reversed(batcher_layers(n)):
        for i, j in layer:
            si, sj = state.get(i), state.get(j)
            if si is None and sj is None:
                continue
            if si == "sum" and sj == "sum":
                continue  # both outputs are summed: the order of the two is irrelevant
            if si is not None and sj is not None:
                ops.append(("cmp", i, j))
            elif si is not None:
                ops.append(("min", i, j))
            else:
                ops.append(("max", i, j))
            state[i] = state[j] = "exact"
    ops.reverse()
    return ops


@functools.lru_cache(maxsize=256)
def compile_ranks(n: int, ranks: frozenset[int]) -> Program:
    """The program computing the values at sorted positions ``ranks`` (to be summed)."""
    loc = list(range(n))  # wire -> slot holding its current value
    owned: set[int] = set()
    free: list[int] = []
    count = 0

    def fresh() -> int:
        nonlocal count
        if free:
            slot = free.pop()
        else:
            slot = n + count
            count += 1
        owned.add(slot)
        return slot

    def release(slot: int) -> None:
        if slot in owned:
            owned.discard(slot)
            free.append(slot)

    steps: list[Step] = []
    for kind, i, j in _prune(n, ranks):
        a, b = loc[i], loc[j]
        if kind == "cmp":
            lo = fresh()
            steps.append((torch.minimum, lo, a, b))
            # max may overwrite an input we own: both inputs are dead after this op
            hi = b if b in owned else (a if a in owned else fresh())
            steps.append((torch.maximum, hi, a, b))
            for s in (a, b):
                if s != hi:
                    release(s)
            loc[i], loc[j] = lo, hi
        else:
            op = torch.minimum if kind == "min" else torch.maximum
            out = a if a in owned else (b if b in owned else fresh())
            steps.append((op, out, a, b))
            for s in (a, b):
                if s != out:
                    release(s)
            loc[i if kind == "min" else j] = out
    return Program(n, tuple(steps), count, tuple(loc[r] for r in sorted(ranks)))


def _blocks(b: int, d: int, elems: int) -> list[tuple[int, int, int, int]]:
    """``(b0, b1, c0, c1)`` blocks of about ``elems`` elements: batch rows x columns."""
    if d >= elems:
        bb, cc = 1, elems
    else:
        bb, cc = max(1, elems // max(d, 1)), d
    return [
        (b0, min(b, b0 + bb), c0, min(d, c0 + cc))
        for b0 in range(0, b, bb)
        for c0 in range(0, d, cc)
    ]


def mean_of_ranks(x: Tensor, lo: int, hi: int) -> Tensor:
    """Per coordinate, the mean of the values of sorted positions ``lo..hi-1``.

    ``x`` is ``(b, n, d)``; returns ``(b, d)`` in ``x``'s dtype. Positions count
    from 0 in increasing order, so ``n`` odd and ``lo = hi - 1 = n // 2`` is the
    median.

    Every op touches one block of at most :data:`BLOCK_ELEMS` elements per row.
    """
    b, n, d = x.shape
    if n > NETWORK_MAX_N:
        return _mean_of_ranks_sort(x, lo, hi)
    program = compile_ranks(n, frozenset(range(lo, hi)))
    out = torch.empty((b, d), dtype=x.dtype)
    if b == 0 or d == 0:
        return out
    itemsize = x.element_size()
    elems = min(BLOCK_ELEMS, max(MIN_BLOCK_ELEMS, CHUNK_BYTES // (itemsize * max(program.nbuf, 1))))
    buf = torch.empty((program.nbuf, elems), dtype=x.dtype)
    for block in _blocks(b, d, elems):
        _run_block(x, program, buf, out, block, hi - lo)
    return out


def _run_block(
    x: Tensor,
    program: Program,
    buf: Tensor,
    out: Tensor,
    block: tuple[int, int, int, int],
    count: int,
) -> None:
    b0, b1, c0, c1 = block
    rows, cols = b1 - b0, c1 - c0
    slots = [x[b0:b1, i, c0:c1] for i in range(program.n)]
    slots += [buf[k, : rows * cols].view(rows, cols) for k in range(program.nbuf)]
    for op, o, s1, s2 in program.steps:
        op(slots[s1], slots[s2], out=slots[o])
    target = out[b0:b1, c0:c1]
    first, *rest = program.outputs
    if not rest:
        target.copy_(slots[first])
        return
    torch.add(slots[first], slots[rest[0]], out=target)
    for s in rest[1:]:
        target.add_(slots[s])
    target.div_(count)


def _mean_of_ranks_sort(x: Tensor, lo: int, hi: int) -> Tensor:
    """:func:`mean_of_ranks` for large ``n``: ``torch.sort`` over column chunks."""
    b, n, d = x.shape
    out = torch.empty((b, d), dtype=x.dtype)
    cc = max(1, SORT_CHUNK_BYTES // (x.element_size() * n * max(b, 1)))
    for c0 in range(0, d, cc):
        c1 = min(d, c0 + cc)
        values = torch.sort(x[:, :, c0:c1], dim=1).values
        torch.mean(values[:, lo:hi], dim=1, out=out[:, c0:c1])
    return out
