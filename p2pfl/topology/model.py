"""The :class:`Topology` value: a graph plus what the nodes need to find each other."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import networkx as nx

from p2pfl.errors import TopologyError


@dataclass(frozen=True, eq=False, repr=False)
class Topology:
    """A communication graph on nodes ``0..n-1`` and its per-node settings.

    ``addresses`` maps a node to the ``"host:port"`` its process listens on and
    ``public_keys`` to its Z85-encoded CurveZMQ public key; both may cover only some
    nodes (the simulator needs neither). ``byzantine`` names the nodes that do not
    follow the protocol. Treat ``graph`` as read-only; :func:`~p2pfl.topology.check_topology`
    validates the whole value.

    Two topologies are equal when they have the same name, nodes, edges, addresses,
    public keys and Byzantine set (node and edge attributes are ignored).
    """

    graph: nx.Graph
    addresses: dict[int, str] = field(default_factory=dict)
    byzantine: frozenset[int] = frozenset()
    public_keys: dict[int, str] = field(default_factory=dict)
    name: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.graph, nx.Graph) or self.graph.is_directed():
            raise TopologyError(
                f"Topology.graph must be an undirected networkx.Graph, got {type(self.graph).__name__}"
            )
        if self.graph.is_multigraph():
            raise TopologyError("Topology.graph must be a simple graph, not a multigraph")
        # Plain dicts and a frozenset, whatever mapping or iterable the caller passed.
        object.__setattr__(self, "addresses", dict(self.addresses))
        object.__setattr__(self, "public_keys", dict(self.public_keys))
        object.__setattr__(self, "byzantine", frozenset(self.byzantine))

    @property
    def n(self) -> int:
        """The number of nodes."""
        return int(self.graph.number_of_nodes())

    @property
    def honest_nodes(self) -> list[int]:
        """The nodes not in ``byzantine``, in increasing order."""
        return sorted(i for i in self.graph.nodes if i not in self.byzantine)

    def neighbours(self, i: int) -> list[int]:
        """The neighbours of node ``i``, in increasing order."""
        if i not in self.graph:
            raise TopologyError(f"node {i} is not in the topology (nodes 0..{self.n - 1})")
        return sorted(self.graph.neighbors(i))

    def edge_list(self) -> list[tuple[int, int]]:
        """Every edge once as ``(u, v)`` with ``u < v``, sorted."""
        return sorted((min(u, v), max(u, v)) for u, v in self.graph.edges())

    def __eq__(self, other: Any) -> bool:
        if not isinstance(other, Topology):
            return NotImplemented
        return (
            self.name == other.name
            and sorted(self.graph.nodes) == sorted(other.graph.nodes)
            and self.edge_list() == other.edge_list()
            and dict(self.addresses) == dict(other.addresses)
            and dict(self.public_keys) == dict(other.public_keys)
            and self.byzantine == other.byzantine
        )

    def __repr__(self) -> str:
        return (
            f"Topology(name={self.name!r}, n={self.n}, edges={self.graph.number_of_edges()}, "
            f"byzantine={sorted(self.byzantine)}, addresses={len(self.addresses)}, "
            f"public_keys={len(self.public_keys)})"
        )

    __hash__ = None  # type: ignore[assignment]  # mutable graph inside: not hashable
