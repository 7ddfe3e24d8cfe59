"""The TOML topology file: exact round trips, string escaping, and every file error."""

from __future__ import annotations

from pathlib import Path

import networkx as nx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pfl.errors import TopologyError
from p2pfl.topology import (
    TOPOLOGIES,
    Topology,
    dumps_topology,
    load_topology,
    loads_topology,
    save_topology,
)
from p2pfl.topology.fileformat import toml_string

pytestmark = pytest.mark.timeout(60)

KEY = "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7"  # a CurveZMQ Z85 public key (40 chars)


def sample() -> Topology:
    return Topology(
        graph=TOPOLOGIES["random_regular"](12, degree=3, seed=4),
        addresses={0: "127.0.0.1:5555", 3: "node-3.example.org:6000", 7: "[::1]:7000"},
        byzantine=frozenset({2, 9}),
        public_keys={0: KEY, 5: KEY.replace("r", "R")},
        name='weird "name" \\ with\ttab',
    )


def test_round_trip_is_exact(tmp_path: Path) -> None:
    t = sample()
    path = tmp_path / "sub" / "t.toml"
    save_topology(t, path)
    back = load_topology(path)
    assert back == t
    assert back.edge_list() == t.edge_list()
    assert dict(back.addresses) == dict(t.addresses)
    assert back.byzantine == frozenset({2, 9})
    assert dict(back.public_keys) == dict(t.public_keys)
    assert back.name == t.name
    assert list(back.graph.nodes) == list(range(12))
    assert not (tmp_path / "sub" / "t.toml.tmp").exists()


def test_written_text_is_readable() -> None:
    text = dumps_topology(Topology(TOPOLOGIES["line"](3), byzantine=frozenset({2}), name="l"))
    assert 'name = "l"' in text
    assert "edges = [\n    [0, 1], [1, 2],\n]" in text
    assert "[[nodes]]\nid = 2\nbyzantine = true" in text


def test_disconnected_topology_round_trips_without_check(tmp_path: Path) -> None:
    g = nx.Graph()
    g.add_nodes_from(range(3))
    g.add_edge(0, 1)
    t = Topology(g, name="split")
    save_topology(t, tmp_path / "s.toml")
    assert load_topology(tmp_path / "s.toml", check=False) == t
    with pytest.raises(TopologyError, match=r"s.toml: the graph form 2 disconnected components"):
        load_topology(tmp_path / "s.toml")


def test_no_edges_and_single_node() -> None:
    g = nx.Graph()
    g.add_node(0)
    t = Topology(g, name="one")
    assert "edges = []" in dumps_topology(t)
    assert loads_topology(dumps_topology(t)) == t


@settings(max_examples=60, deadline=None)
@given(
    st.text(
        alphabet=st.characters(exclude_categories=["Cs"]),  # lone surrogates are not UTF-8
        max_size=40,
    )
)
def test_any_name_round_trips(name: str) -> None:
    t = Topology(TOPOLOGIES["ring"](3), name=name)
    assert loads_topology(dumps_topology(t)).name == name


def test_toml_string_escapes() -> None:
    assert toml_string('a"b\\c\n\x01\x7f') == '"a\\"b\\\\c\\n\\u0001\\u007F"'
    with pytest.raises(TopologyError, match=r"UTF-8 cannot encode"):
        toml_string("\ud800")


def test_edges_as_tables() -> None:
    text = """
[[nodes]]
id = 0
[[nodes]]
id = 1
[[edges]]
u = 1
v = 0
"""
    t = loads_topology(text)
    assert t.edge_list() == [(0, 1)]


def test_name_defaults_to_file_stem(tmp_path: Path) -> None:
    p = tmp_path / "my-graph.toml"
    p.write_text("edges = [[0, 1]]\n[[nodes]]\nid = 0\n[[nodes]]\nid = 1\n")
    assert load_topology(p).name == "my-graph"


NODES3 = "[[nodes]]\nid = 0\n[[nodes]]\nid = 1\n[[nodes]]\nid = 2\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            f"edges = [[0, 1], [1, 5]]\n{NODES3}",
            r"edges\[1\]: node 5 is not declared in \[\[nodes\]\]",
        ),
        (f"edges = [[0, 1], [2, 2]]\n{NODES3}", r"edges\[1\]: self-loop on node 2"),
        (
            f"edges = [[0, 1], [1, 2], [1, 0]]\n{NODES3}",
            r"edges\[2\]: duplicate edge 1-0 \(also edges\[0\]\)",
        ),
        (
            "edges = [[0, 1]]\n[[nodes]]\nid = 0\n[[nodes]]\nid = 1\n[[nodes]]\nid = 1\n",
            r"nodes\[2\].id: duplicate node id 1 \(also nodes\[1\]\)",
        ),
        (
            "edges = [[0, 1]]\n[[nodes]]\nid = 0\n[[nodes]]\nid = 5\n",
            r"nodes: ids must be exactly 0..1 for 2 nodes; id 5 is out of range and id 1 is missing",
        ),
        (
            f"edges = [[0, 1], [1, 2]]\n{NODES3}[[nodes]]\nid = 3\n",
            r"the graph form 2 disconnected components of sizes 3, 1",
        ),
        (
            'edges = [[0, 1], [1, 2]]\n[[nodes]]\nid = 0\naddress = "10.0.0.1"\n'
            "[[nodes]]\nid = 1\n[[nodes]]\nid = 2\n",
            r"nodes\[0\].address: address '10.0.0.1': expected 'host:port'",
        ),
        (
            'edges = [[0, 1], [1, 2]]\n[[nodes]]\nid = 0\naddress = "h:99999"\n'
            "[[nodes]]\nid = 1\n[[nodes]]\nid = 2\n",
            r"nodes\[0\].address: .*port 99999 is outside 1..65535",
        ),
        (
            'edges = [[0, 1], [1, 2]]\n[[nodes]]\nid = 0\naddress = "h:1"\n'
            '[[nodes]]\nid = 1\naddress = "h:1"\n[[nodes]]\nid = 2\n',
            r"nodes 0 and 1 share the address h:1",
        ),
        (
            'edges = [[0, 1], [1, 2]]\n[[nodes]]\nid = 0\npublic_key = "short"\n'
            "[[nodes]]\nid = 1\n[[nodes]]\nid = 2\n",
            r"nodes\[0\].public_key: public key 'short': expected 40 Z85 characters, got 5",
        ),
        (
            f"edges = [[0, 1], [1, 2]]\n{NODES3}".replace("id = 1\n", "id = 1\nbyzantine = true\n"),
            r"the honest nodes form 2 disconnected components of sizes 1, 1",
        ),
        (
            "edges = [[0, 1]]\n[[nodes]]\nid = 0\nbyzantine = true\n"
            "[[nodes]]\nid = 1\nbyzantine = true\n",
            r"all 2 nodes are Byzantine",
        ),
        ("edges = []\nnodes = []\n", r"nodes: the topology has no nodes"),
        ("edges = []\n", r"nodes: missing"),
        (f"edges = [[0, 1]]\nname = 3\n{NODES3}", r"name: expected a string, got 3"),
        (f"edgez = [[0, 1]]\n{NODES3}", r"edgez: unknown key; valid keys: name, edges, nodes"),
        (
            "[[nodes]]\nid = 0\nadress = 'x'\n",
            r"nodes\[0\].adress: unknown key; valid keys: id, address",
        ),
        ("[[nodes]]\nid = '0'\n", r"nodes\[0\].id: expected an integer, got '0'"),
        ("[[nodes]]\nname = 'a'\n", r"nodes\[0\].name: unknown key"),
        ("[[nodes]]\nbyzantine = false\n", r"nodes\[0\].id: missing"),
        ("[[nodes]]\nid = 0\nbyzantine = 'yes'\n", r"nodes\[0\].byzantine: expected true or false"),
        (
            "[[nodes]]\nid = 0\naddress = 5555\n",
            r"nodes\[0\].address: expected a 'host:port' string",
        ),
        (
            f"edges = [[0, 1, 2]]\n{NODES3}",
            r"edges\[0\]: expected \[u, v\] with two integer node ids",
        ),
        (f"edges = [[0, 1.5]]\n{NODES3}", r"edges\[0\]: expected \[u, v\] with two integer"),
        (f"edges = [3]\n{NODES3}", r"edges\[0\]: expected \[u, v\], got 3"),
        (f"edges = 3\n{NODES3}", r"edges: expected an array of \[u, v\] pairs"),
        (
            f"[[edges]]\nu = 0\nw = 1\n{NODES3}",
            r"edges\[0\]: an \[\[edges\]\] table needs exactly the keys u and v",
        ),
        ("nodes = 3\n", r"nodes: expected \[\[nodes\]\] tables"),
    ],
)
def test_file_errors_name_file_and_key(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(TopologyError, match=message) as info:
        load_topology(path)
    assert str(info.value).startswith(f"{path}: ")


def test_invalid_toml_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text('name = "x"\nedges = [[0, 1]\n[[nodes]]\n', encoding="utf-8")
    with pytest.raises(TopologyError, match=r"broken.toml: invalid TOML: .*line \d+"):
        load_topology(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(TopologyError, match=r"nope.toml: no such topology file"):
        load_topology(tmp_path / "nope.toml")


def test_directory_is_not_a_file(tmp_path: Path) -> None:
    with pytest.raises(TopologyError, match=r"is a directory"):
        load_topology(tmp_path)


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin.toml"
    path.write_bytes(b'name = "caf\xe9"\n')
    with pytest.raises(TopologyError, match=r"latin.toml: (not UTF-8|invalid TOML)"):
        load_topology(path)


def test_loads_names_its_source() -> None:
    with pytest.raises(TopologyError, match=r"^<cli>: nodes: missing"):
        loads_topology("edges = []", source="<cli>")


def test_save_rejects_what_the_format_cannot_hold(tmp_path: Path) -> None:
    g = nx.Graph([(1, 2)])
    with pytest.raises(TopologyError, match=r"cannot save: node ids must be exactly 0..1"):
        save_topology(Topology(g), tmp_path / "x.toml")
    with pytest.raises(TopologyError, match=r"cannot save: Byzantine id 7 is not a node"):
        save_topology(
            Topology(TOPOLOGIES["ring"](3), byzantine=frozenset({7})), tmp_path / "x.toml"
        )
    with pytest.raises(TopologyError, match=r"cannot save: address given for node 9"):
        save_topology(Topology(TOPOLOGIES["ring"](3), addresses={9: "h:1"}), tmp_path / "x.toml")
    assert not (tmp_path / "x.toml").exists()


def test_save_into_unwritable_place(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(TopologyError, match=r"cannot write"):
        save_topology(Topology(TOPOLOGIES["ring"](3)), blocker / "x.toml")


def test_large_topology_round_trip(tmp_path: Path) -> None:
    t = Topology(TOPOLOGIES["random_regular"](2048, seed=0), name="big")
    save_topology(t, tmp_path / "big.toml")
    assert load_topology(tmp_path / "big.toml") == t
