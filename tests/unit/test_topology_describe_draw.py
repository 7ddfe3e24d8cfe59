"""describe() statistics and draw() pictures."""

from __future__ import annotations

from pathlib import Path

import networkx as nx
import pytest

from p2pfl.errors import TopologyError
from p2pfl.topology import TOPOLOGIES, Topology, describe, draw
from p2pfl.topology.describe import diameter
from p2pfl.topology.draw import layout

pytestmark = pytest.mark.timeout(60)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_describe_ring_with_byzantine_nodes() -> None:
    t = Topology(TOPOLOGIES["ring"](10), byzantine=frozenset({0}), addresses={1: "h:1"}, name="r")
    d = describe(t)
    assert d["name"] == "r"
    assert d["n"] == 10
    assert d["edges"] == 10
    assert (d["degree_min"], d["degree_mean"], d["degree_max"]) == (2, 2.0, 2)
    assert d["diameter"] == 5
    assert d["connected"] is True
    assert d["components"] == 1
    assert 0 < d["spectral_gap"] < 1
    assert d["byzantine"] == 1
    assert d["max_byzantine_neighbours"] == 1
    assert d["addresses"] == 1
    assert d["public_keys"] == 0


def test_describe_star_byzantine_leaves_all_reach_the_hub() -> None:
    t = Topology(TOPOLOGIES["star"](6), byzantine=frozenset({1, 2, 3}))
    d = describe(t)
    assert d["max_byzantine_neighbours"] == 3
    assert d["degree_max"] == 5
    assert d["diameter"] == 2


def test_describe_complete_graph_gap_is_one() -> None:
    d = describe(Topology(TOPOLOGIES["complete"](6)))
    assert d["spectral_gap"] == pytest.approx(1.0)
    assert d["diameter"] == 1


def test_describe_disconnected_graph_uses_largest_component() -> None:
    g = nx.Graph()
    g.add_nodes_from(range(7))
    g.add_edges_from([(0, 1), (1, 2), (2, 3), (4, 5)])
    d = describe(Topology(g))
    assert d["connected"] is False
    assert d["components"] == 3
    assert d["diameter"] == 3
    assert d["spectral_gap"] == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize(("kind", "n"), [("ring", 2048), ("torus", 2048), ("exponential", 64)])
def test_diameter_matches_networkx(kind: str, n: int) -> None:
    g = TOPOLOGIES[kind](n)
    expected = {"ring": 1024, "torus": 32 // 2 + 64 // 2}.get(kind) or nx.diameter(g)
    assert diameter(g) == expected


def test_diameter_of_single_node() -> None:
    g = nx.Graph()
    g.add_node(0)
    assert diameter(g) == 0


def test_draw_writes_png(tmp_path: Path) -> None:
    t = Topology(TOPOLOGIES["random_regular"](16, seed=0), byzantine=frozenset({1, 5}), name="rr")
    out = tmp_path / "sub" / "t.png"
    draw(t, out)
    assert out.read_bytes()[:8] == PNG_MAGIC


def test_draw_large_graph_without_labels(tmp_path: Path) -> None:
    t = Topology(TOPOLOGIES["random_regular"](400, seed=0), byzantine=frozenset({3}))
    out = tmp_path / "big.png"
    draw(t, out)
    assert out.read_bytes()[:8] == PNG_MAGIC


def test_draw_samples_edges_of_dense_graphs(tmp_path: Path) -> None:
    out = tmp_path / "dense.png"
    draw(Topology(TOPOLOGIES["complete"](250)), out)  # 31,125 edges > 20,000 drawn
    assert out.read_bytes()[:8] == PNG_MAGIC


def test_layouts() -> None:
    ring = layout(TOPOLOGIES["ring"](12))
    radii = {round(float((p**2).sum()) ** 0.5, 6) for p in ring.values()}
    assert len(radii) == 1  # on a circle
    assert set(layout(TOPOLOGIES["torus"](16)).keys()) == set(range(16))
    big = layout(TOPOLOGIES["random_regular"](500, seed=0))
    assert len(big) == 500


def test_draw_errors(tmp_path: Path) -> None:
    with pytest.raises(TopologyError, match=r"no nodes"):
        draw(Topology(nx.Graph()), tmp_path / "x.png")
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(TopologyError, match=r"cannot write"):
        draw(Topology(TOPOLOGIES["ring"](4)), blocker / "x.png")
