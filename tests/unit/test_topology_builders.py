"""Topology builders: structure, determinism, parameter errors, the TOPOLOGIES registry."""

from __future__ import annotations

import math

import networkx as nx
import pytest

import p2pfl.topology as topology
from p2pfl.errors import ConfigError, TopologyError, UnknownNameError
from p2pfl.topology import TOPOLOGIES
from p2pfl.topology.builders import torus_shape

pytestmark = pytest.mark.timeout(60)

ALL_KINDS = [
    "ring",
    "line",
    "star",
    "complete",
    "torus",
    "random_regular",
    "erdos_renyi",
    "watts_strogatz",
    "barabasi_albert",
    "exponential",
    "dumbbell",
]


def degrees(g: nx.Graph) -> list[int]:
    return [d for _, d in sorted(g.degree())]


def test_public_api_is_all() -> None:
    assert sorted(topology.__all__) == sorted(
        [
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
    )
    for name in topology.__all__:
        assert hasattr(topology, name)


def test_registry_holds_every_builder() -> None:
    assert TOPOLOGIES.names() == sorted(ALL_KINDS)


def test_unknown_builder_lists_valid_names() -> None:
    with pytest.raises(
        UnknownNameError,
        match=r"topology.kind: unknown topology 'moebius'; valid topologies: .*ring",
    ):
        TOPOLOGIES["moebius"]


def test_misspelt_builder_parameter_is_config_error() -> None:
    with pytest.raises(ConfigError, match=r"topology.params.degre: unknown parameter"):
        TOPOLOGIES.bind("random_regular", {"degre": 3}, "topology.params")


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_nodes_are_zero_to_n_minus_one_in_order_and_connected(kind: str) -> None:
    g = TOPOLOGIES[kind](16, seed=3)
    assert list(g.nodes) == list(range(16))
    assert not g.is_directed()
    assert nx.number_of_selfloops(g) == 0
    assert nx.is_connected(g)


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_same_seed_same_graph(kind: str) -> None:
    a = TOPOLOGIES[kind](24, seed=7)
    b = TOPOLOGIES[kind](24, seed=7)
    assert list(a.edges()) == list(b.edges())


@pytest.mark.parametrize(
    "kind", ["random_regular", "erdos_renyi", "watts_strogatz", "barabasi_albert"]
)
def test_different_seeds_give_different_random_graphs(kind: str) -> None:
    a = TOPOLOGIES[kind](32, seed=0)
    b = TOPOLOGIES[kind](32, seed=1)
    assert sorted(a.edges()) != sorted(b.edges())


def test_ring() -> None:
    g = TOPOLOGIES["ring"](10)
    assert degrees(g) == [2] * 10
    assert g.number_of_edges() == 10
    assert g.has_edge(9, 0)


def test_line() -> None:
    g = TOPOLOGIES["line"](5)
    assert sorted(g.edges()) == [(0, 1), (1, 2), (2, 3), (3, 4)]


def test_star() -> None:
    g = TOPOLOGIES["star"](6)
    assert g.degree(0) == 5
    assert degrees(g)[1:] == [1] * 5


def test_complete() -> None:
    g = TOPOLOGIES["complete"](9)
    assert g.number_of_edges() == 9 * 8 // 2
    assert degrees(g) == [8] * 9


def test_torus_given_rows_and_cols() -> None:
    g = TOPOLOGIES["torus"](12, rows=3, cols=4)
    assert degrees(g) == [4] * 12
    assert g.number_of_edges() == 24
    # node r*cols + c: right neighbour wraps within the row, down neighbour within the column
    assert g.has_edge(3, 0) and g.has_edge(0, 8) and g.has_edge(5, 6) and g.has_edge(5, 9)
    assert not g.has_edge(3, 4)


def test_torus_shape_derived_from_n() -> None:
    assert torus_shape(16) == (4, 4)
    assert torus_shape(2048) == (32, 64)
    assert torus_shape(12) == (3, 4)
    assert torus_shape(12, rows=4) == (4, 3)
    assert torus_shape(12, cols=4) == (3, 4)


@pytest.mark.parametrize(
    ("n", "params", "message"),
    [
        (14, {}, "n = 14 cannot be arranged as rows x cols"),
        (13, {}, "cannot be arranged"),
        (16, {"rows": 2}, "rows must be >= 3"),
        (16, {"rows": 5}, "n = 16 is not rows = 5 times an integer"),
        (16, {"rows": 4, "cols": 5}, "rows \\* cols = 4 \\* 5 = 20 != n = 16"),
        (4, {}, "needs n >= 9"),
    ],
)
def test_torus_errors(n: int, params: dict[str, int], message: str) -> None:
    with pytest.raises(TopologyError, match=message):
        TOPOLOGIES["torus"](n, **params)


def test_random_regular_degrees() -> None:
    g = TOPOLOGIES["random_regular"](20, degree=3, seed=1)
    assert degrees(g) == [3] * 20


@pytest.mark.parametrize(
    ("n", "degree", "message"),
    [
        (9, 3, "n \\* degree = 9 \\* 3 is odd"),
        (8, 8, "degree must be in \\[1, n-1\\]"),
        (8, 0, "degree must be in"),
        (8, 1, "disconnected matching"),
    ],
)
def test_random_regular_errors(n: int, degree: int, message: str) -> None:
    with pytest.raises(TopologyError, match=message):
        TOPOLOGIES["random_regular"](n, degree=degree)


def test_erdos_renyi_edge_density_and_connectivity() -> None:
    g = TOPOLOGIES["erdos_renyi"](200, p=0.1, seed=5)
    expected = 0.1 * 200 * 199 / 2
    assert abs(g.number_of_edges() - expected) < 4 * math.sqrt(expected)
    assert nx.is_connected(g)


def test_erdos_renyi_below_threshold_gives_up_with_a_hint() -> None:
    with pytest.raises(TopologyError, match=r"no connected graph in 100 draws.*raise p above"):
        TOPOLOGIES["erdos_renyi"](200, p=0.001)


def test_erdos_renyi_p_range() -> None:
    with pytest.raises(TopologyError, match="p must be in \\[0, 1\\]"):
        TOPOLOGIES["erdos_renyi"](10, p=1.5)


def test_watts_strogatz_without_rewiring_is_a_ring_lattice() -> None:
    g = TOPOLOGIES["watts_strogatz"](12, k=4, p=0.0)
    assert degrees(g) == [4] * 12
    assert g.has_edge(0, 2) and g.has_edge(0, 10) and not g.has_edge(0, 3)


def test_watts_strogatz_rewired_keeps_edge_count() -> None:
    g = TOPOLOGIES["watts_strogatz"](50, k=6, p=0.3, seed=2)
    assert g.number_of_edges() == 50 * 3


@pytest.mark.parametrize("k", [3, 0, 12])
def test_watts_strogatz_k_errors(k: int) -> None:
    with pytest.raises(TopologyError, match=r"k must be even"):
        TOPOLOGIES["watts_strogatz"](12, k=k)


def test_barabasi_albert() -> None:
    g = TOPOLOGIES["barabasi_albert"](30, m=2, seed=0)
    assert g.number_of_edges() == 2 * (30 - 2)
    # every node added after networkx's (m+1)-node seed star joins m earlier nodes
    assert min(degrees(g)[3:]) >= 2
    with pytest.raises(TopologyError, match=r"m must be in"):
        TOPOLOGIES["barabasi_albert"](5, m=5)


@pytest.mark.parametrize("n", [2, 3, 5, 8, 16, 17, 100])
def test_exponential_edges_match_the_definition(n: int) -> None:
    g = TOPOLOGIES["exponential"](n)
    expected = set()
    for i in range(n):
        for k in range(math.floor(math.log2(n - 1)) + 1):
            j = (i + 2**k) % n
            expected.add((min(i, j), max(i, j)))
    assert sorted(g.edges()) == sorted(expected)


def test_exponential_16_degree() -> None:
    # offsets +-1, +-2, +-4 and 8 (= -8): degree 7
    assert degrees(TOPOLOGIES["exponential"](16)) == [7] * 16


def test_dumbbell_is_two_cliques_and_one_bridge() -> None:
    g = TOPOLOGIES["dumbbell"](10)
    assert g.number_of_edges() == 2 * (5 * 4 // 2) + 1
    assert list(nx.bridges(g)) == [(4, 5)]
    h = g.copy()
    h.remove_edge(4, 5)
    assert sorted(sorted(c) for c in nx.connected_components(h)) == [
        [0, 1, 2, 3, 4],
        [5, 6, 7, 8, 9],
    ]
    for c in ([0, 1, 2, 3, 4], [5, 6, 7, 8, 9]):
        assert h.subgraph(c).number_of_edges() == 10


@pytest.mark.parametrize("n", [7, 2])
def test_dumbbell_errors(n: int) -> None:
    with pytest.raises(TopologyError, match=r"dumbbell"):
        TOPOLOGIES["dumbbell"](n)


@pytest.mark.parametrize(
    ("kind", "n"), [("ring", 2), ("line", 1), ("star", 1), ("complete", 1), ("exponential", 1)]
)
def test_too_few_nodes(kind: str, n: int) -> None:
    with pytest.raises(TopologyError, match=f"{kind}: needs n >= "):
        TOPOLOGIES[kind](n)


@pytest.mark.parametrize("bad", [2.5, True, "8"])
def test_n_must_be_an_integer(bad: object) -> None:
    with pytest.raises(TopologyError, match=r"n must be an integer"):
        TOPOLOGIES["ring"](bad)


@pytest.mark.parametrize(
    "kind", ["ring", "torus", "random_regular", "exponential", "watts_strogatz"]
)
def test_2048_nodes_build(kind: str) -> None:
    g = TOPOLOGIES[kind](2048, seed=1)
    assert g.number_of_nodes() == 2048
    assert nx.is_connected(g)
