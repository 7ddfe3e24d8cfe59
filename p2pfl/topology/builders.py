"""Topology builders: ``builder(n, *, seed=0, ...) -> networkx.Graph`` on nodes ``0..n-1``.

Every builder returns a simple undirected graph whose nodes are inserted in order
``0..n-1`` and whose edges are inserted sorted, so the same arguments give the same
graph object layout (and the same mixing matrix) on every machine. Random builders
are deterministic functions of ``seed``; the ones that must be connected
(``random_regular``, ``erdos_renyi``, ``watts_strogatz``) redraw with seeds derived
from ``seed`` and the attempt number, up to :data:`MAX_TRIES` times, then raise
:class:`~p2pfl.errors.TopologyError`.

Graphs are built from numpy edge arrays where that is cheaper than networkx's
generators, so that 2,048-node graphs take milliseconds.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import networkx as nx
import numpy as np

from p2pfl.errors import TopologyError
from p2pfl.seeding import derive_seed

MAX_TRIES = 100  # redraws of a random graph before giving up on connectivity


def from_edges(n: int, edges: np.ndarray) -> nx.Graph:
    """A graph on nodes ``0..n-1`` (in order) with ``edges`` (shape ``(m, 2)``), sorted.

    Each pair is stored as ``(min, max)``; duplicate pairs collapse to one edge.
    """
    g = nx.Graph()
    g.add_nodes_from(range(n))
    e = np.asarray(edges, dtype=np.int64).reshape(-1, 2)
    if len(e):
        # one int64 key per pair, sorted then deduplicated (np.unique is much slower here)
        keys = np.sort(np.minimum(e[:, 0], e[:, 1]) * n + np.maximum(e[:, 0], e[:, 1]))
        keys = keys[np.concatenate([[True], keys[1:] != keys[:-1]])]
        g.add_edges_from(zip((keys // n).tolist(), (keys % n).tolist(), strict=True))
    return g


def canonical(graph: nx.Graph) -> nx.Graph:
    """``graph`` rebuilt with nodes ``0..n-1`` in order and edges sorted (same structure)."""
    edges = np.array(list(graph.edges()), dtype=np.int64).reshape(-1, 2)
    return from_edges(graph.number_of_nodes(), edges)


def _check_n(kind: str, n: int, minimum: int, seed: int) -> None:
    if isinstance(n, bool) or not isinstance(n, int):
        raise TopologyError(f"{kind}: n must be an integer, got {n!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TopologyError(f"{kind}: seed must be an integer, got {seed!r}")
    if n < minimum:
        raise TopologyError(f"{kind}: needs n >= {minimum} nodes, got n={n}")


def _check_probability(kind: str, name: str, p: float) -> None:
    if not 0.0 <= p <= 1.0:
        raise TopologyError(f"{kind}: {name} must be in [0, 1], got {p}")


def _connected_draw(kind: str, seed: int, draw: Callable[[int], nx.Graph], hint: str) -> nx.Graph:
    """The first connected graph among ``draw(derive_seed(seed, attempt))``, attempts 0..MAX_TRIES-1."""
    for attempt in range(MAX_TRIES):
        g = draw(derive_seed(seed, attempt))
        if nx.is_connected(g):
            return g
    raise TopologyError(f"{kind}: no connected graph in {MAX_TRIES} draws from seed {seed}; {hint}")


def ring(n: int, *, seed: int = 0) -> nx.Graph:
    """The cycle ``0 - 1 - ... - (n-1) - 0``; every node has degree 2 (``n >= 3``)."""
    _check_n("ring", n, 3, seed)
    i = np.arange(n)
    return from_edges(n, np.stack([i, (i + 1) % n], axis=1))


def line(n: int, *, seed: int = 0) -> nx.Graph:
    """The path ``0 - 1 - ... - (n-1)`` (``n >= 2``)."""
    _check_n("line", n, 2, seed)
    i = np.arange(n - 1)
    return from_edges(n, np.stack([i, i + 1], axis=1))


def star(n: int, *, seed: int = 0) -> nx.Graph:
    """Node 0 joined to every other node; no other edges (``n >= 2``)."""
    _check_n("star", n, 2, seed)
    i = np.arange(1, n)
    return from_edges(n, np.stack([np.zeros_like(i), i], axis=1))


def complete(n: int, *, seed: int = 0) -> nx.Graph:
    """Every pair of nodes joined: ``n (n-1) / 2`` edges (``n >= 2``)."""
    _check_n("complete", n, 2, seed)
    u, v = np.triu_indices(n, k=1)
    return from_edges(n, np.stack([u, v], axis=1))


def torus_shape(n: int, rows: int | None = None, cols: int | None = None) -> tuple[int, int]:
    """``(rows, cols)`` with ``rows * cols == n`` and both ``>= 3``.

    Missing sides are derived from ``n``; with neither given, the most square
    arrangement (``rows <= cols``) is chosen.
    """
    for name, side in (("rows", rows), ("cols", cols)):
        if side is not None and side < 3:
            raise TopologyError(f"torus: {name} must be >= 3 (a 4-regular torus), got {side}")
    if rows is not None and cols is not None:
        if rows * cols != n:
            raise TopologyError(f"torus: rows * cols = {rows} * {cols} = {rows * cols} != n = {n}")
        return rows, cols
    if rows is not None:
        return rows, _other_side(n, rows, "rows")
    if cols is not None:
        return _other_side(n, cols, "cols"), cols
    for r in range(math.isqrt(n), 2, -1):
        if n % r == 0 and n // r >= 3:
            return r, n // r
    raise TopologyError(
        f"torus: n = {n} cannot be arranged as rows x cols with rows, cols >= 3 "
        f"(choose n such as 9, 12, 16, 2048, or pass rows and cols)"
    )


def _other_side(n: int, given: int, name: str) -> int:
    if n % given or n // given < 3:
        raise TopologyError(f"torus: n = {n} is not {name} = {given} times an integer >= 3")
    return n // given


def torus(n: int, *, seed: int = 0, rows: int | None = None, cols: int | None = None) -> nx.Graph:
    """The 2-D torus: node ``r * cols + c`` joined to its four wrap-around grid neighbours.

    ``rows`` and ``cols`` default to the most square factorization of ``n`` with
    both sides ``>= 3``, so every node has degree exactly 4.
    """
    _check_n("torus", n, 9, seed)
    r, c = torus_shape(n, rows, cols)
    idx = np.arange(n).reshape(r, c)
    right = np.stack([idx.ravel(), np.roll(idx, -1, axis=1).ravel()], axis=1)
    down = np.stack([idx.ravel(), np.roll(idx, -1, axis=0).ravel()], axis=1)
    return from_edges(n, np.concatenate([right, down]))


def random_regular(n: int, *, seed: int = 0, degree: int = 4) -> nx.Graph:
    """A random connected ``degree``-regular graph (networkx's Steger-Wormald pairing
    algorithm, approximately uniform over such graphs).

    Needs ``1 <= degree < n`` and ``n * degree`` even (the sum of degrees is twice the
    number of edges). Disconnected draws are redrawn.
    """
    _check_n("random_regular", n, 2, seed)
    if degree < 1 or degree >= n:
        raise TopologyError(
            f"random_regular: degree must be in [1, n-1] = [1, {n - 1}], got {degree}"
        )
    if (n * degree) % 2:
        raise TopologyError(
            f"random_regular: n * degree = {n} * {degree} is odd; no such regular graph exists"
        )
    if degree == 1 and n > 2:
        raise TopologyError(
            f"random_regular: a 1-regular graph on {n} nodes is a disconnected matching; use degree >= 2"
        )

    def draw(s: int) -> nx.Graph:
        return canonical(nx.random_regular_graph(degree, n, seed=s))

    return _connected_draw("random_regular", seed, draw, "use degree >= 3")


def erdos_renyi(n: int, *, seed: int = 0, p: float = 0.3) -> nx.Graph:
    """G(n, p): each of the ``n (n-1) / 2`` pairs is an edge independently with probability ``p``.

    Redrawn until connected; G(n, p) is connected with high probability once
    ``p > ln(n) / n``, so a smaller ``p`` soon raises :class:`TopologyError`.
    """
    _check_n("erdos_renyi", n, 2, seed)
    _check_probability("erdos_renyi", "p", p)
    u, v = np.triu_indices(n, k=1)

    def draw(s: int) -> nx.Graph:
        keep = np.random.default_rng(s).random(u.shape[0]) < p
        return from_edges(n, np.stack([u[keep], v[keep]], axis=1))

    return _connected_draw(
        "erdos_renyi", seed, draw, f"raise p above ln(n)/n = {math.log(n) / n:.4g}"
    )


def watts_strogatz(n: int, *, seed: int = 0, k: int = 4, p: float = 0.1) -> nx.Graph:
    """Watts and Strogatz (Nature 1998) small world: a ring lattice, each node joined to
    its ``k`` nearest neighbours (``k/2`` per side), each edge rewired with probability
    ``p``. Redrawn until connected. ``k`` must be even with ``2 <= k < n``.
    """
    _check_n("watts_strogatz", n, 3, seed)
    if k < 2 or k % 2 or k >= n:
        raise TopologyError(f"watts_strogatz: k must be even with 2 <= k < n = {n}, got {k}")
    _check_probability("watts_strogatz", "p", p)

    def draw(s: int) -> nx.Graph:
        return canonical(nx.watts_strogatz_graph(n, k, p, seed=s))

    return _connected_draw("watts_strogatz", seed, draw, "lower p or raise k")


def barabasi_albert(n: int, *, seed: int = 0, m: int = 2) -> nx.Graph:
    """Barabási and Albert (Science 1999) preferential attachment: each new node joins
    ``m`` existing nodes chosen with probability proportional to degree. Always
    connected; needs ``1 <= m < n``.
    """
    _check_n("barabasi_albert", n, 2, seed)
    if m < 1 or m >= n:
        raise TopologyError(f"barabasi_albert: m must be in [1, n-1] = [1, {n - 1}], got {m}")
    return canonical(nx.barabasi_albert_graph(n, m, seed=seed))


def exponential(n: int, *, seed: int = 0) -> nx.Graph:
    """The static exponential graph of Ying et al. (NeurIPS 2021, "Exponential graph is
    provably efficient for decentralized deep training"): node ``i`` links to
    ``(i + 2^k) mod n`` for ``k = 0 .. floor(log2(n - 1))``, taken as undirected
    (so each node has degree about ``2 log2(n)``; pairs reached both ways count once).
    """
    _check_n("exponential", n, 2, seed)
    ks = np.arange((n - 1).bit_length())  # k = 0 .. floor(log2(n - 1))
    i = np.arange(n)
    j = (i[:, None] + (1 << ks)[None, :]) % n
    return from_edges(n, np.stack([np.repeat(i, len(ks)), j.ravel()], axis=1))


def dumbbell(n: int, *, seed: int = 0) -> nx.Graph:
    """Two cliques of ``n/2`` nodes each (``0..n/2-1`` and ``n/2..n-1``) joined by the
    single bridge edge ``(n/2 - 1, n/2)``. ``n`` must be even and ``>= 4``.
    """
    _check_n("dumbbell", n, 4, seed)
    if n % 2:
        raise TopologyError(f"dumbbell: n must be even (two equal cliques), got n={n}")
    h = n // 2
    u, v = np.triu_indices(h, k=1)
    left = np.stack([u, v], axis=1)
    bridge = np.array([[h - 1, h]])
    return from_edges(n, np.concatenate([left, left + h, bridge]))
