"""import_graph: edge lists, GraphML and node-link JSON, with their errors."""

from __future__ import annotations

import json
from pathlib import Path

import networkx as nx
import pytest

from p2pfl.errors import TopologyError
from p2pfl.topology import TOPOLOGIES, import_graph

pytestmark = pytest.mark.timeout(30)


@pytest.mark.parametrize("suffix", [".edges", ".txt", ".edgelist"])
def test_edge_list(tmp_path: Path, suffix: str) -> None:
    p = tmp_path / f"g{suffix}"
    p.write_text("# a triangle plus a tail\n0 1\n1 2  # trailing comment\n\n2 0\n0 1\n3 2\n")
    g = import_graph(p)
    assert list(g.nodes) == [0, 1, 2, 3]
    assert sorted(g.edges()) == [(0, 1), (0, 2), (1, 2), (2, 3)]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("0 1\n1 2 3\n", r"line 2: expected 'u v' \(two node ids\), got '1 2 3'"),
        ("0 1\na b\n", r"line 2: node ids must be integers"),
        ("0 1\n\n1 1\n", r"line 3: self-loop on node 1"),
        ("# nothing\n", r"no edges found"),
        ("0 1\n1 5\n", r"node ids must be the integers 0..2, got 0, 1, 5"),
    ],
)
def test_edge_list_errors(tmp_path: Path, text: str, message: str) -> None:
    p = tmp_path / "bad.edges"
    p.write_text(text)
    with pytest.raises(TopologyError, match=message) as info:
        import_graph(p)
    assert str(info.value).startswith(str(p))


def test_relabel_renumbers_in_sorted_order(tmp_path: Path) -> None:
    p = tmp_path / "g.edges"
    p.write_text("10 20\n20 5\n")
    g = import_graph(p, relabel=True)
    # sorted ids 5, 10, 20 -> 0, 1, 2
    assert sorted(g.edges()) == [(0, 2), (1, 2)]


def test_graphml_round_trip_through_networkx(tmp_path: Path) -> None:
    original = TOPOLOGIES["random_regular"](10, degree=3, seed=2)
    p = tmp_path / "g.graphml"
    nx.write_graphml(original, p)
    g = import_graph(p)
    assert list(g.nodes) == list(range(10))
    assert sorted(g.edges()) == sorted(original.edges())


def test_graphml_with_string_ids_needs_relabel(tmp_path: Path) -> None:
    p = tmp_path / "named.graphml"
    nx.write_graphml(nx.Graph([("b", "a"), ("b", "c")]), p)
    with pytest.raises(
        TopologyError, match=r"node ids must be the integers 0..2, got 'b', 'a', 'c'.*--relabel"
    ):
        import_graph(p)
    g = import_graph(p, relabel=True)
    assert sorted(g.edges()) == [(0, 1), (1, 2)]  # a=0, b=1, c=2


def test_directed_graphml_becomes_undirected(tmp_path: Path) -> None:
    p = tmp_path / "d.graphml"
    nx.write_graphml(nx.DiGraph([(0, 1), (1, 0), (1, 2)]), p)
    g = import_graph(p)
    assert not g.is_directed()
    assert sorted(g.edges()) == [(0, 1), (1, 2)]


def test_invalid_graphml(tmp_path: Path) -> None:
    p = tmp_path / "bad.graphml"
    p.write_text("<graphml><graph><node id=")
    with pytest.raises(TopologyError, match=r"bad.graphml: not valid GraphML"):
        import_graph(p)


def test_node_link_json(tmp_path: Path) -> None:
    original = TOPOLOGIES["exponential"](8)
    p = tmp_path / "g.json"
    p.write_text(json.dumps(nx.node_link_data(original, edges="links")))
    assert sorted(import_graph(p).edges()) == sorted(original.edges())


def test_node_link_json_with_edges_key_and_isolated_node(tmp_path: Path) -> None:
    p = tmp_path / "g.json"
    data = {"nodes": [{"id": 0}, {"id": 1}, {"id": 2}], "edges": [{"source": 0, "target": 1}]}
    p.write_text(json.dumps(data))
    g = import_graph(p)
    assert list(g.nodes) == [0, 1, 2]
    assert list(g.edges()) == [(0, 1)]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "invalid JSON"),
        ("[1, 2]", "expected node-link JSON"),
        ('{"nodes": [{"name": 0}], "links": []}', r"nodes\[0\]: expected an object with an 'id'"),
        (
            '{"nodes": [{"id": 0}], "links": [{"source": 0}]}',
            r"links\[0\]: expected an object with 'source' and 'target'",
        ),
        (
            '{"nodes": [{"id": 0.5}], "links": []}',
            r"nodes\[0\].id: node ids must be integers or strings",
        ),
        (
            '{"nodes": [{"id": 0}, {"id": 1}], "links": [{"source": 1, "target": 1}]}',
            "self-loop on node 1",
        ),
        ('{"nodes": [], "links": []}', "the graph has no nodes"),
        ('{"nodes": 3, "links": []}', "'nodes' and 'links' must be arrays"),
    ],
)
def test_node_link_errors(tmp_path: Path, content: str, message: str) -> None:
    p = tmp_path / "bad.json"
    p.write_text(content)
    with pytest.raises(TopologyError, match=message):
        import_graph(p)


def test_unknown_suffix_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(TopologyError, match=r"unknown graph format '.gml'; use one of .edges"):
        import_graph(tmp_path / "g.gml")
    with pytest.raises(TopologyError, match=r"g.edges: no such file"):
        import_graph(tmp_path / "g.edges")
    with pytest.raises(TopologyError, match=r"g.graphml: no such file"):
        import_graph(tmp_path / "g.graphml")
    with pytest.raises(TopologyError, match=r"g.json: no such file"):
        import_graph(tmp_path / "g.json")
