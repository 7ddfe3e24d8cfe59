"""Byzantine placements: random, highest_degree, around_victim, cut_vertex."""

from __future__ import annotations

import networkx as nx
import pytest

from p2pfl.errors import ConfigError, TopologyError
from p2pfl.topology import PLACEMENTS, TOPOLOGIES

pytestmark = pytest.mark.timeout(60)


def test_registry() -> None:
    assert PLACEMENTS.names() == ["around_victim", "cut_vertex", "highest_degree", "random"]
    with pytest.raises(ConfigError, match=r"unknown placement 'middle'"):
        PLACEMENTS["middle"]


@pytest.mark.parametrize("name", ["random", "highest_degree", "around_victim", "cut_vertex"])
def test_count_and_membership_and_determinism(name: str) -> None:
    g = TOPOLOGIES["barabasi_albert"](40, m=3, seed=1)
    a = PLACEMENTS[name](g, 3, seed=5)
    assert isinstance(a, frozenset)
    assert len(a) == 3
    assert a <= set(g.nodes)
    assert PLACEMENTS[name](g, 3, seed=5) == a


@pytest.mark.parametrize("name", ["random", "highest_degree", "around_victim", "cut_vertex"])
def test_zero_is_empty(name: str) -> None:
    assert PLACEMENTS[name](TOPOLOGIES["ring"](8), 0) == frozenset()


@pytest.mark.parametrize("name", ["random", "highest_degree", "around_victim", "cut_vertex"])
def test_count_above_n_is_an_error(name: str) -> None:
    with pytest.raises(
        TopologyError, match=r"cannot place 9 Byzantine nodes in a graph of 8 nodes"
    ):
        PLACEMENTS[name](TOPOLOGIES["ring"](8), 9)
    with pytest.raises(TopologyError, match=r"cannot place -1"):
        PLACEMENTS[name](TOPOLOGIES["ring"](8), -1)


def test_random_varies_with_seed_and_covers_all_nodes() -> None:
    g = TOPOLOGIES["ring"](20)
    draws = {PLACEMENTS["random"](g, 2, seed=s) for s in range(40)}
    assert len(draws) > 20
    assert set().union(*draws) == set(range(20))
    assert PLACEMENTS["random"](g, 20) == frozenset(range(20))


def test_highest_degree_picks_the_hubs() -> None:
    g = TOPOLOGIES["star"](10)
    assert PLACEMENTS["highest_degree"](g, 1) == frozenset({0})
    g = TOPOLOGIES["barabasi_albert"](60, m=2, seed=0)
    chosen = PLACEMENTS["highest_degree"](g, 5)
    worst_chosen = min(g.degree(i) for i in chosen)
    best_other = max(g.degree(i) for i in g.nodes if i not in chosen)
    assert worst_chosen >= best_other


def test_highest_degree_ties_broken_by_seed() -> None:
    g = TOPOLOGIES["ring"](30)
    assert len({PLACEMENTS["highest_degree"](g, 3, seed=s) for s in range(10)}) > 1


def test_around_victim_surrounds_the_given_victim() -> None:
    g = TOPOLOGIES["random_regular"](20, degree=4, seed=3)
    chosen = PLACEMENTS["around_victim"](g, 3, victim=7, seed=0)
    assert chosen <= set(g.neighbors(7))
    assert 7 not in chosen


def test_around_victim_draws_a_victim_with_enough_neighbours() -> None:
    g = TOPOLOGIES["star"](8)  # only the hub has 3 neighbours
    chosen = PLACEMENTS["around_victim"](g, 3, seed=4)
    assert 0 not in chosen
    assert len(chosen) == 3
    # some honest node has every Byzantine node as a neighbour
    assert any(chosen <= set(g.neighbors(v)) for v in g.nodes if v not in chosen)


@pytest.mark.parametrize(
    ("kwargs", "count", "message"),
    [
        ({"victim": 0}, 3, r"victim 0 has 2 neighbours; cannot surround it with 3"),
        ({"victim": 99}, 1, r"victim 99 is not a node"),
        ({}, 3, r"no node has 3 neighbours \(max degree 2\)"),
    ],
)
def test_around_victim_errors(kwargs: dict[str, int], count: int, message: str) -> None:
    with pytest.raises(TopologyError, match=message):
        PLACEMENTS["around_victim"](TOPOLOGIES["ring"](8), count, **kwargs)


def test_around_victim_parameter_binds() -> None:
    place = PLACEMENTS.bind("around_victim", {"victim": 2}, "byzantine.placement_params")
    assert place(TOPOLOGIES["ring"](8), 2) == frozenset({1, 3})


def test_cut_vertex_takes_the_dumbbell_bridge_first() -> None:
    g = TOPOLOGIES["dumbbell"](12)
    assert PLACEMENTS["cut_vertex"](g, 2) == frozenset({5, 6})
    assert PLACEMENTS["cut_vertex"](g, 1) <= {5, 6}


def test_cut_vertex_prefers_articulation_points_by_betweenness() -> None:
    # path 0-1-2-3-4: articulation points 1, 2, 3; 2 is the most central
    g = TOPOLOGIES["line"](5)
    assert PLACEMENTS["cut_vertex"](g, 1) == frozenset({2})
    assert PLACEMENTS["cut_vertex"](g, 3) == frozenset({1, 2, 3})


def test_cut_vertex_falls_back_to_betweenness() -> None:
    # a wheel has no articulation point; its hub lies on most shortest paths
    g = nx.wheel_graph(10)
    assert not set(nx.articulation_points(g))
    assert PLACEMENTS["cut_vertex"](g, 1) == frozenset({0})


def test_cut_vertex_on_large_graph_samples_betweenness() -> None:
    g = TOPOLOGIES["barabasi_albert"](1024, m=1, seed=0)  # a tree: many articulation points
    chosen = PLACEMENTS["cut_vertex"](g, 4, seed=1)
    assert len(chosen) == 4
    assert chosen <= set(nx.articulation_points(g))
    assert PLACEMENTS["cut_vertex"](g, 4, seed=1) == chosen
