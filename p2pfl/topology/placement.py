"""Where the Byzantine nodes sit: ``place(graph, count, *, seed=0) -> frozenset[int]``.

* ``random``: ``count`` nodes drawn uniformly without replacement.
* ``highest_degree``: the ``count`` best-connected nodes (ties broken at random).
* ``around_victim``: ``count`` neighbours of one honest ``victim`` node, so that node
  sees as many Byzantine inputs as possible; the victim is drawn among the nodes
  with at least ``count`` neighbours when not given.
* ``cut_vertex``: nodes whose removal fragments the graph first: articulation
  points (which include every bridge endpoint of degree > 1; the other bridge
  endpoints are leaves, which cut nothing), then the rest, each group by
  decreasing betweenness centrality (Freeman 1977; estimated from 256 sampled
  sources above 512 nodes, Brandes and Pich 2007). These are the positions from
  which Byzantine nodes can best separate honest ones.

All are deterministic functions of ``(graph, count, seed)``. ``count`` may be 0..n
(placing all ``n`` is allowed here; the experiment rejects it); anything
impossible raises :class:`~p2pfl.errors.TopologyError`.
"""

from __future__ import annotations

import networkx as nx
import numpy as np

from p2pfl.errors import TopologyError

EXACT_BETWEENNESS_MAX_N = 512
BETWEENNESS_SAMPLES = 256


def _check(kind: str, graph: nx.Graph, count: int) -> list[int]:
    if isinstance(count, bool) or not isinstance(count, int):
        raise TopologyError(f"placement {kind}: count must be an integer, got {count!r}")
    n = graph.number_of_nodes()
    if not 0 <= count <= n:
        raise TopologyError(
            f"placement {kind}: cannot place {count} Byzantine nodes in a graph of {n} nodes"
        )
    return sorted(graph.nodes)


def _ranked(nodes: list[int], score: dict[int, float], rng: np.random.Generator) -> list[int]:
    """``nodes`` by decreasing score, equal scores in a seeded random order."""
    tiebreak = rng.permutation(len(nodes))
    order = sorted(range(len(nodes)), key=lambda k: (-score[nodes[k]], tiebreak[k]))
    return [nodes[k] for k in order]


def random(graph: nx.Graph, count: int, *, seed: int = 0) -> frozenset[int]:
    """``count`` nodes drawn uniformly at random without replacement."""
    nodes = _check("random", graph, count)
    picked = np.random.default_rng(seed).choice(len(nodes), size=count, replace=False)
    return frozenset(nodes[int(k)] for k in picked)


def highest_degree(graph: nx.Graph, count: int, *, seed: int = 0) -> frozenset[int]:
    """The ``count`` nodes of highest degree; ``seed`` breaks ties."""
    nodes = _check("highest_degree", graph, count)
    degree = {i: float(d) for i, d in graph.degree()}
    return frozenset(_ranked(nodes, degree, np.random.default_rng(seed))[:count])


def around_victim(
    graph: nx.Graph, count: int, *, seed: int = 0, victim: int | None = None
) -> frozenset[int]:
    """``count`` neighbours of the honest node ``victim`` (drawn at random if ``None``).

    The victim needs at least ``count`` neighbours; when it has more, which of them
    turn Byzantine is drawn with ``seed``.
    """
    nodes = _check("around_victim", graph, count)
    rng = np.random.default_rng(seed)
    if victim is None:
        eligible = [i for i in nodes if graph.degree(i) >= count]
        if not eligible:
            top = max(d for _, d in graph.degree())
            raise TopologyError(
                f"placement around_victim: no node has {count} neighbours (max degree {top})"
            )
        victim = eligible[int(rng.integers(len(eligible)))]
    elif victim not in graph:
        raise TopologyError(f"placement around_victim: victim {victim} is not a node")
    nbrs = sorted(graph.neighbors(victim))
    if len(nbrs) < count:
        raise TopologyError(
            f"placement around_victim: victim {victim} has {len(nbrs)} neighbours; "
            f"cannot surround it with {count} Byzantine nodes"
        )
    picked = rng.choice(len(nbrs), size=count, replace=False)
    return frozenset(nbrs[int(k)] for k in picked)


def cut_vertex(graph: nx.Graph, count: int, *, seed: int = 0) -> frozenset[int]:
    """Articulation points first, then the other nodes; each by decreasing betweenness.

    Ties are broken by ``seed`` (which also picks the sampled sources on large graphs).
    """
    nodes = _check("cut_vertex", graph, count)
    if count == 0:
        return frozenset()
    n = len(nodes)
    k = None if n <= EXACT_BETWEENNESS_MAX_N else BETWEENNESS_SAMPLES
    between = nx.betweenness_centrality(graph, k=k, seed=seed)
    rng = np.random.default_rng(seed)
    articulation = set(nx.articulation_points(graph))
    rest = set(nodes) - articulation
    out: list[int] = []
    for group in (articulation, rest):
        out += _ranked(sorted(group), between, rng)
    return frozenset(out[:count])
