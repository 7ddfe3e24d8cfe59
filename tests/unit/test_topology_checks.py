"""check_topology on Topology values, address and key parsing, Topology helpers."""

from __future__ import annotations

import dataclasses

import networkx as nx
import pytest

from p2pfl.errors import TopologyError
from p2pfl.topology import TOPOLOGIES, Topology, check_topology, parse_address
from p2pfl.topology.checks import check_public_key

pytestmark = pytest.mark.timeout(30)

KEY = "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7"


def ring(n: int = 6, **kw: object) -> Topology:
    return Topology(TOPOLOGIES["ring"](n), **kw)  # type: ignore[arg-type]


def test_valid_topology_passes() -> None:
    check_topology(
        ring(
            addresses={0: "127.0.0.1:1", 1: "[::1]:2"},
            byzantine=frozenset({3}),
            public_keys={0: KEY},
        )
    )


def test_topology_helpers() -> None:
    t = ring(6, byzantine={1, 4})
    assert t.n == 6
    assert t.byzantine == frozenset({1, 4})  # any iterable becomes a frozenset
    assert t.honest_nodes == [0, 2, 3, 5]
    assert t.neighbours(0) == [1, 5]
    assert t.edge_list()[0] == (0, 1)
    with pytest.raises(TopologyError, match=r"node 9 is not in the topology"):
        t.neighbours(9)
    with pytest.raises(dataclasses.FrozenInstanceError):
        t.name = "x"  # type: ignore[misc]
    assert "n=6" in repr(t)


def test_equality_ignores_edge_order() -> None:
    g1 = nx.Graph([(0, 1), (1, 2)])
    g2 = nx.Graph([(2, 1), (1, 0)])
    assert Topology(g1, name="a") == Topology(g2, name="a")
    assert Topology(g1, name="a") != Topology(g2, name="b")
    assert Topology(g1) != Topology(g1, byzantine=frozenset({0}))


def test_graph_must_be_undirected_simple() -> None:
    with pytest.raises(TopologyError, match=r"undirected networkx.Graph"):
        Topology(nx.DiGraph([(0, 1)]))
    with pytest.raises(TopologyError, match=r"not a multigraph"):
        Topology(nx.MultiGraph([(0, 1)]))


def graph_with(edges: list[tuple[int, int]], nodes: list[int]) -> nx.Graph:
    g = nx.Graph()
    g.add_nodes_from(nodes)
    g.add_edges_from(edges)
    return g


@pytest.mark.parametrize(
    ("topology", "message"),
    [
        (Topology(nx.Graph()), "the topology has no nodes"),
        (
            Topology(graph_with([(1, 2)], [1, 2])),
            r"node ids must be exactly 0..1.*missing: 0; out of range: 2",
        ),
        (Topology(graph_with([("a", "b")], ["a", "b"])), "non-integer ids"),  # type: ignore[list-item]
        (Topology(graph_with([(0, 1), (1, 1)], [0, 1])), r"self-loop on node\(s\) 1"),
        (ring(addresses={0: "nohost"}), "node 0: address 'nohost': expected 'host:port'"),
        (ring(addresses={0: ":80"}), "expected 'host:port'"),
        (ring(addresses={0: "h:0"}), "port 0 is outside 1..65535"),
        (ring(addresses={0: "h:http"}), "port 'http' is not a number"),
        (ring(addresses={0: "bad host:1"}), "is not a host name or IPv4 address"),
        (ring(addresses={0: "::1:80"}), "write IPv6 addresses in brackets"),
        (ring(addresses={0: "[zz::1]:80"}), r"\[zz::1\] is not an IPv6 address"),
        (ring(addresses={0: "a:1", 2: "a:1"}), "nodes 0 and 2 share the address a:1"),
        (ring(addresses={8: "a:1"}), "address given for node 8, which is not a node"),
        (
            ring(public_keys={1: KEY[:-1]}),
            "node 1: public key .* expected 40 Z85 characters, got 39",
        ),
        (ring(public_keys={1: KEY[:-1] + "~"}), "characters '~' are not Z85"),
        (ring(public_keys={7: KEY}), "public key given for node 7, which is not a node"),
        (ring(byzantine=frozenset({6, 9})), r"Byzantine id\(s\) 6, 9 are not nodes \(0..5\)"),
        (
            ring(3, byzantine=frozenset({0, 1, 2})),
            "all 3 nodes are Byzantine; at least one must be honest",
        ),
        (
            ring(byzantine=frozenset({0, 3})),
            "the honest nodes form 2 disconnected components of sizes 2, 2",
        ),
        (
            Topology(graph_with([(0, 1), (1, 2), (3, 4)], list(range(6)))),
            "the graph form 3 disconnected components of sizes 3, 2, 1",
        ),
    ],
)
def test_check_errors(topology: Topology, message: str) -> None:
    with pytest.raises(TopologyError, match=message):
        check_topology(topology)


def test_dumbbell_bridge_endpoint_disconnects_the_honest_nodes() -> None:
    t = Topology(TOPOLOGIES["dumbbell"](8), byzantine=frozenset({3}))
    with pytest.raises(TopologyError, match=r"sizes 4, 3"):
        check_topology(t)


@pytest.mark.parametrize(
    ("address", "parsed"),
    [
        ("127.0.0.1:5555", ("127.0.0.1", 5555)),
        ("localhost:1", ("localhost", 1)),
        ("node-7.cluster.local:65535", ("node-7.cluster.local", 65535)),
        ("[::1]:9000", ("[::1]", 9000)),
    ],
)
def test_parse_address(address: str, parsed: tuple[str, int]) -> None:
    assert parse_address(address) == parsed


def test_public_key_type() -> None:
    with pytest.raises(TopologyError, match=r"expected 40 Z85 characters, got int"):
        check_public_key(5)  # type: ignore[arg-type]
