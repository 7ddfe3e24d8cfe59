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

from typing import Literal

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


def mixing_matrix(graph: nx.Graph, scheme: MixingScheme = "metropolis") -> torch.Tensor:
    """The ``(n, n)`` float64 gossip matrix of ``graph`` (nodes ``0..n-1``) under ``scheme``.

    See the module docstring for the two schemes. Rows sum to 1 in both; columns too
    for ``metropolis``.
    """
    if scheme not in SCHEMES:
        raise TopologyError(f"mixing scheme must be one of {', '.join(SCHEMES)}, got {scheme!r}")
    n, u, v = _edge_arrays(graph)
    deg = np.bincount(np.concatenate([u, v]), minlength=n).astype(np.float64)
    w = np.zeros((n, n), dtype=np.float64)
    if scheme in ("metropolis", "lazy_metropolis"):
        vals = 1.0 / (1.0 + np.maximum(deg[u], deg[v]))
        w[u, v] = vals
        w[v, u] = vals
        w[np.arange(n), np.arange(n)] = 1.0 - w.sum(axis=1)
        if scheme == "lazy_metropolis":
            m = float(np.diag(w).min())
            w = (w + (1.0 - m) * np.eye(n)) / (2.0 - m)
    else:
        inv = 1.0 / (deg + 1.0)
        w[u, v] = inv[u]
        w[v, u] = inv[v]
        w[np.arange(n), np.arange(n)] = inv
    return torch.from_numpy(w)


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
