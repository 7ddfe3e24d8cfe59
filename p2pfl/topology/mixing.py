"""Gossip mixing matrices of a graph and their spectral gap.

``metropolis`` (Metropolis-Hastings weights; Xiao and Boyd, "Fast linear iterations
for distributed averaging", 2004)::

    W_ij = 1 / (1 + max(deg_i, deg_j))   for each edge {i, j}
    W_ii = 1 - sum_{j != i} W_ij

W is symmetric and doubly stochastic, so gossip ``x <- W x`` preserves the average.

``uniform``: each node averages itself and its neighbours equally::

    W_ij = 1 / (deg_i + 1)   for j in N(i) ∪ {i}

W is row-stochastic but, unless the graph is regular, neither symmetric nor column
stochastic: gossip with it converges to a degree-weighted average, not the mean.

``lazy_metropolis``: Metropolis made lazier, as He, Karimireddy and Jaggi normalize
their malicious ring (``MaliciousRing(normalize=True)`` in the released code of
ClippedGossip, arXiv 2202.01545)::

    W' = (W + (1 - m) I) / (2 - m),   m = min_i W_ii  (W: Metropolis)

Still symmetric and doubly stochastic; every node keeps at least half of its own
vector, so a neighbour's pull is ``1 / (2 - m)`` of Metropolis'.

Both are built from edge arrays with vectorized scatter operations, not per-node
Python loops, so a 2,048-node matrix takes milliseconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import networkx as nx
import numpy as np
import torch

from p2pfl.errors import TopologyError

MixingScheme = Literal["metropolis", "uniform", "lazy_metropolis"]
SCHEMES: tuple[str, ...] = ("metropolis", "uniform", "lazy_metropolis")


def _edge_arrays(graph: nx.Graph) -> tuple[int, np.ndarray, np.ndarray]:
    n = graph.number_of_nodes()
    if set(graph.nodes) != set(range(n)):
        raise TopologyError("mixing_matrix: the graph's nodes must be 0..n-1")
    if nx.number_of_selfloops(graph):
        raise TopologyError("mixing_matrix: the graph has self-loops")
    e = np.array(list(graph.edges()), dtype=np.int64).reshape(-1, 2)
    return n, e[:, 0], e[:, 1]


@dataclass(frozen=True)
class MixingWeights:
    """A gossip matrix ``W`` stored by rows (CSR): ``O(N + E)`` memory, not ``8 N^2`` bytes.

    Read like the dense matrix where the rounds read it: ``w[i, j]`` (a 0-d tensor),
    ``w[i, js]`` and ``w[is, j]`` (1-d), float64; entries off the graph are 0.
    :meth:`dense` is the ``(n, n)`` matrix (:func:`mixing_matrix`). At 100,000 nodes of
    degree 8 it holds ~11 MB where the dense matrix would need 80 GB.
    """

    n: int
    indptr: np.ndarray  # (n + 1,) int64
    indices: np.ndarray  # (nnz,) int64, columns sorted within each row, the diagonal included
    values: np.ndarray  # (nnz,) float64

    def _row(self, i: int, cols: np.ndarray) -> np.ndarray:
        if not 0 <= i < self.n:
            raise IndexError(f"mixing row {i} out of range 0..{self.n - 1}")
        lo, hi = int(self.indptr[i]), int(self.indptr[i + 1])
        idx = self.indices[lo:hi]
        at = np.minimum(np.searchsorted(idx, cols), max(hi - lo - 1, 0))
        hit = idx[at] == cols if hi > lo else np.zeros(cols.shape, dtype=bool)
        return np.where(hit, self.values[lo:hi][at] if hi > lo else 0.0, 0.0)

    def __getitem__(self, key: tuple[Any, Any]) -> torch.Tensor:
        rows, cols = key
        if isinstance(rows, (int, np.integer)):
            c = np.asarray(cols, dtype=np.int64)
            return torch.from_numpy(self._row(int(rows), c.reshape(-1)).reshape(c.shape))
        if isinstance(cols, (int, np.integer)):
            one = np.array([int(cols)], dtype=np.int64)
            out = [self._row(int(r), one)[0] for r in np.asarray(rows, dtype=np.int64)]
            return torch.tensor(out, dtype=torch.float64)
        raise TypeError("MixingWeights: index with [i, j], [i, js] or [is, j]")

    def dense(self) -> torch.Tensor:
        """The ``(n, n)`` float64 matrix."""
        w = np.zeros((self.n, self.n), dtype=np.float64)
        rows = np.repeat(np.arange(self.n), np.diff(self.indptr))
        w[rows, self.indices] = self.values
        return torch.from_numpy(w)


#: What the rounds read mixing weights from: the sparse rows or a dense matrix.
Mixing = MixingWeights | torch.Tensor


def mixing_weights(graph: nx.Graph, scheme: MixingScheme = "metropolis") -> MixingWeights:
    """The gossip matrix of ``graph`` (nodes ``0..n-1``) under ``scheme``, by rows.

    See the module docstring for the schemes. Rows sum to 1; columns too for the
    Metropolis ones. Built from the edge arrays: no ``(n, n)`` array at any point.
    """
    if scheme not in SCHEMES:
        raise TopologyError(f"mixing scheme must be one of {', '.join(SCHEMES)}, got {scheme!r}")
    n, u, v = _edge_arrays(graph)
    deg = np.bincount(np.concatenate([u, v]), minlength=n).astype(np.float64)
    if scheme in ("metropolis", "lazy_metropolis"):
        vals = 1.0 / (1.0 + np.maximum(deg[u], deg[v]))
        off_uv, off_vu = vals, vals
    else:
        inv = 1.0 / (deg + 1.0)
        off_uv, off_vu = inv[u], inv[v]
    rows = np.concatenate([u, v])
    cols = np.concatenate([v, u])
    off = np.concatenate([off_uv, off_vu])
    if scheme == "uniform":
        diag: np.ndarray = 1.0 / (deg + 1.0)
    else:
        diag = 1.0 - np.bincount(rows, weights=off, minlength=n)
        if scheme == "lazy_metropolis":
            m = float(diag.min()) if n else 1.0
            off = off / (2.0 - m)
            diag = (diag + (1.0 - m)) / (2.0 - m)
    every_row = np.concatenate([rows, np.arange(n)])
    every_col = np.concatenate([cols, np.arange(n)])
    every_val = np.concatenate([off, diag])
    order = np.lexsort((every_col, every_row))
    indptr = np.concatenate([[0], np.cumsum(np.bincount(every_row, minlength=n))])
    return MixingWeights(
        n=n,
        indptr=indptr.astype(np.int64),
        indices=every_col[order].astype(np.int64),
        values=every_val[order].astype(np.float64),
    )


def mixing_matrix(graph: nx.Graph, scheme: MixingScheme = "metropolis") -> torch.Tensor:
    """The ``(n, n)`` float64 gossip matrix of ``graph`` (nodes ``0..n-1``) under ``scheme``.

    See the module docstring for the schemes. Rows sum to 1 in both; columns too
    for ``metropolis``. The dense form of :func:`mixing_weights` (for small graphs:
    ``8 n^2`` bytes).
    """
    return mixing_weights(graph, scheme).dense()


def spectral_gap(w: torch.Tensor) -> float:
    """``1 - |lambda_2(W)|``: one minus the second largest eigenvalue modulus of ``W``.

    For a stochastic W the largest modulus is 1; the gap governs how fast gossip
    with W reaches consensus (0 for a disconnected graph). A symmetric W uses the
    symmetric eigensolver. A 1x1 matrix has no second eigenvalue; its gap is 1.
    """
    if w.ndim != 2 or w.shape[0] != w.shape[1]:
        raise ValueError(f"spectral_gap: expected a square matrix, got shape {tuple(w.shape)}")
    if w.shape[0] < 2:
        return 1.0
    w64 = w.to(torch.float64)
    if torch.allclose(w64, w64.T, rtol=0.0, atol=1e-12):
        moduli = torch.linalg.eigvalsh(w64).abs()
    else:
        moduli = torch.linalg.eigvals(w64).abs()
    second = torch.sort(moduli, descending=True).values[1]
    return float(max(0.0, 1.0 - float(second)))
