"""Summary statistics of a topology: :func:`describe`."""

from __future__ import annotations

from typing import Any

import networkx as nx
import numpy as np

from p2pfl.topology.mixing import mixing_matrix, spectral_gap
from p2pfl.topology.model import Topology

_BFS_CHUNK = 256  # sources per shortest-path batch: bounds memory to 256 * n distances


def diameter(graph: nx.Graph) -> int:
    """The diameter (longest shortest path, in hops) of the largest connected component.

    Breadth-first searches run in scipy's compiled ``csgraph`` code, batched over
    sources, so a 2,048-node ring (diameter 1,024) takes well under a second.
    """
    if graph.number_of_nodes() == 0:
        return 0
    from scipy.sparse import csr_array
    from scipy.sparse.csgraph import shortest_path

    largest = max(nx.connected_components(graph), key=len)
    sub = graph.subgraph(largest)
    index = {v: k for k, v in enumerate(sub.nodes)}
    m = len(index)
    if m == 1:
        return 0
    e = np.array([(index[u], index[v]) for u, v in sub.edges()], dtype=np.int64)
    adj = csr_array(
        (
            np.ones(2 * len(e)),
            (np.concatenate([e[:, 0], e[:, 1]]), np.concatenate([e[:, 1], e[:, 0]])),
        ),
        shape=(m, m),
    )
    best = 0.0
    for start in range(0, m, _BFS_CHUNK):
        rows = np.arange(start, min(start + _BFS_CHUNK, m))
        dist = shortest_path(adj, method="D", directed=False, unweighted=True, indices=rows)
        best = max(best, float(dist.max()))
    return int(best)


def describe(t: Topology) -> dict[str, Any]:
    """A flat summary of ``t``.

    Keys: ``name``, ``n``, ``edges``, ``degree_min``, ``degree_mean``, ``degree_max``,
    ``connected``, ``components``, ``diameter`` (of the largest component),
    ``spectral_gap`` (``1 - |lambda_2|`` of the Metropolis matrix), ``byzantine``
    (count), ``max_byzantine_neighbours`` (the most Byzantine neighbours any honest
    node has), ``addresses`` and ``public_keys`` (how many nodes have one).
    """
    g = t.graph
    n = t.n
    degrees = np.array([d for _, d in g.degree()], dtype=np.float64)
    components = nx.number_connected_components(g) if n else 0
    byz_neighbours = [sum(1 for j in g.neighbors(i) if j in t.byzantine) for i in t.honest_nodes]
    return {
        "name": t.name,
        "n": n,
        "edges": g.number_of_edges(),
        "degree_min": int(degrees.min()) if n else 0,
        "degree_mean": float(degrees.mean()) if n else 0.0,
        "degree_max": int(degrees.max()) if n else 0,
        "connected": components == 1,
        "components": components,
        "diameter": diameter(g),
        "spectral_gap": spectral_gap(mixing_matrix(g, "metropolis")) if n else 0.0,
        "byzantine": len(t.byzantine),
        "max_byzantine_neighbours": max(byz_neighbours, default=0),
        "addresses": len(t.addresses),
        "public_keys": len(t.public_keys),
    }
