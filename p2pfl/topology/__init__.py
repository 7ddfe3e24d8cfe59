"""Communication graphs: builders, mixing matrices, topology files, checks, placements.

Builders (:data:`TOPOLOGIES`), ``builder(n, *, seed=0, ...) -> networkx.Graph`` on
nodes ``0..n-1``: ``ring``, ``line``, ``star``, ``complete``, ``torus``,
``random_regular``, ``erdos_renyi``, ``watts_strogatz``, ``barabasi_albert``,
``exponential``, ``dumbbell``.

Byzantine placements (:data:`PLACEMENTS`), ``place(graph, count, *, seed=0) ->
frozenset[int]``: ``random``, ``highest_degree``, ``around_victim``, ``cut_vertex``.

A :class:`Topology` is a graph plus node addresses, public keys and the Byzantine
set; :func:`load_topology` / :func:`save_topology` read and write the TOML format
of ``docs/topology-format.md``, :func:`import_graph` reads edge lists, GraphML and
node-link JSON, :func:`check_topology` validates, :func:`describe` summarizes and
:func:`draw` pictures one. :func:`mixing_matrix` gives the gossip weights.
"""

from __future__ import annotations

from collections.abc import Callable

import networkx as nx

from p2pfl.registry import Registry
from p2pfl.topology import builders, placement
from p2pfl.topology.checks import check_topology, parse_address
from p2pfl.topology.describe import describe
from p2pfl.topology.draw import draw
from p2pfl.topology.fileformat import dumps_topology, load_topology, loads_topology, save_topology
from p2pfl.topology.imports import import_graph
from p2pfl.topology.mixing import (
    MixingScheme,
    MixingWeights,
    mixing_matrix,
    mixing_weights,
    spectral_gap,
)
from p2pfl.topology.model import Topology

TopologyBuilder = Callable[..., nx.Graph]
Placement = Callable[..., frozenset[int]]

TOPOLOGIES: Registry[TopologyBuilder] = Registry(
    "topology",
    {
        "ring": builders.ring,
        "line": builders.line,
        "star": builders.star,
        "complete": builders.complete,
        "torus": builders.torus,
        "random_regular": builders.random_regular,
        "erdos_renyi": builders.erdos_renyi,
        "watts_strogatz": builders.watts_strogatz,
        "barabasi_albert": builders.barabasi_albert,
        "exponential": builders.exponential,
        "dumbbell": builders.dumbbell,
    },
    key="topology.kind",
)

PLACEMENTS: Registry[Placement] = Registry(
    "placement",
    {
        "random": placement.random,
        "highest_degree": placement.highest_degree,
        "around_victim": placement.around_victim,
        "cut_vertex": placement.cut_vertex,
    },
    key="byzantine.placement",
)

__all__ = [
    "PLACEMENTS",
    "TOPOLOGIES",
    "MixingScheme",
    "MixingWeights",
    "Placement",
    "Topology",
    "TopologyBuilder",
    "check_topology",
    "describe",
    "draw",
    "dumps_topology",
    "import_graph",
    "load_topology",
    "loads_topology",
    "mixing_matrix",
    "mixing_weights",
    "parse_address",
    "save_topology",
    "spectral_gap",
]
