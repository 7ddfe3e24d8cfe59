"""Mixing matrices (Metropolis-Hastings, uniform) and the spectral gap."""

from __future__ import annotations

import math

import networkx as nx
import pytest
import torch

from p2pfl.errors import TopologyError
from p2pfl.topology import TOPOLOGIES, mixing_matrix, spectral_gap

pytestmark = pytest.mark.timeout(60)


def path3() -> nx.Graph:
    g = nx.Graph()
    g.add_nodes_from(range(3))
    g.add_edges_from([(0, 1), (1, 2)])
    return g


def test_metropolis_three_node_path_by_hand() -> None:
    # deg = (1, 2, 1): W_01 = W_12 = 1 / (1 + max(1, 2)) = 1/3; diagonal = 1 - row sum
    expected = torch.tensor(
        [[2 / 3, 1 / 3, 0.0], [1 / 3, 1 / 3, 1 / 3], [0.0, 1 / 3, 2 / 3]], dtype=torch.float64
    )
    w = mixing_matrix(path3())
    assert w.dtype == torch.float64
    torch.testing.assert_close(w, expected)


def test_uniform_three_node_path_by_hand() -> None:
    # W_ij = 1 / (deg_i + 1) over N(i) and i itself
    expected = torch.tensor(
        [[1 / 2, 1 / 2, 0.0], [1 / 3, 1 / 3, 1 / 3], [0.0, 1 / 2, 1 / 2]], dtype=torch.float64
    )
    torch.testing.assert_close(mixing_matrix(path3(), "uniform"), expected)


@pytest.mark.parametrize(
    ("kind", "params"),
    [
        ("ring", {}),
        ("star", {}),
        ("barabasi_albert", {"m": 2}),
        ("erdos_renyi", {"p": 0.2}),
        ("dumbbell", {}),
        ("exponential", {}),
    ],
)
def test_metropolis_is_symmetric_doubly_stochastic_nonnegative(
    kind: str, params: dict[str, float]
) -> None:
    g = TOPOLOGIES[kind](30, seed=1, **params)
    w = mixing_matrix(g)
    ones = torch.ones(30, dtype=torch.float64)
    torch.testing.assert_close(w, w.T)
    torch.testing.assert_close(w.sum(1), ones)
    torch.testing.assert_close(w.sum(0), ones)
    assert bool((w >= 0).all())
    # zero exactly where there is no edge
    adj = torch.tensor(nx.to_numpy_array(g, nodelist=range(30))) > 0
    off = ~torch.eye(30, dtype=torch.bool)
    assert torch.equal((w > 0) & off, adj & off)


def test_uniform_is_row_stochastic_but_not_symmetric_on_irregular_graphs() -> None:
    w = mixing_matrix(TOPOLOGIES["star"](5), "uniform")
    torch.testing.assert_close(w.sum(1), torch.ones(5, dtype=torch.float64))
    assert not torch.allclose(w, w.T)
    assert w[0, 1] == pytest.approx(1 / 5)
    assert w[1, 0] == pytest.approx(1 / 2)


def test_uniform_equals_metropolis_on_regular_graphs() -> None:
    g = TOPOLOGIES["random_regular"](20, degree=4, seed=0)
    torch.testing.assert_close(mixing_matrix(g, "uniform"), mixing_matrix(g, "metropolis"))


def test_unknown_scheme() -> None:
    with pytest.raises(TopologyError, match=r"mixing scheme must be one of metropolis, uniform"):
        mixing_matrix(path3(), "magic")  # type: ignore[arg-type]


def test_nodes_must_be_zero_to_n_minus_one() -> None:
    g = nx.Graph([(1, 2)])
    with pytest.raises(TopologyError, match=r"nodes must be 0..n-1"):
        mixing_matrix(g)


def test_self_loops_rejected() -> None:
    g = path3()
    g.add_edge(1, 1)
    with pytest.raises(TopologyError, match=r"self-loops"):
        mixing_matrix(g)


def test_spectral_gap_of_complete_graph_is_one() -> None:
    # Metropolis on K_n: every entry is 1/n, so W = J/n has eigenvalues 1, 0, ..., 0
    w = mixing_matrix(TOPOLOGIES["complete"](10))
    torch.testing.assert_close(w, torch.full((10, 10), 0.1, dtype=torch.float64))
    assert spectral_gap(w) == pytest.approx(1.0, abs=1e-10)


def test_spectral_gap_of_ring_matches_closed_form() -> None:
    # W = (I + shift + shift^T) / 3: eigenvalues (1 + 2 cos(2 pi k / n)) / 3
    n = 8
    expected = 1 - (1 + 2 * math.cos(2 * math.pi / n)) / 3
    assert spectral_gap(mixing_matrix(TOPOLOGIES["ring"](n))) == pytest.approx(expected, abs=1e-12)


def test_spectral_gap_of_disconnected_graph_is_zero() -> None:
    g = nx.Graph()
    g.add_nodes_from(range(4))
    g.add_edges_from([(0, 1), (2, 3)])
    assert spectral_gap(mixing_matrix(g)) == pytest.approx(0.0, abs=1e-12)


def test_spectral_gap_of_nonsymmetric_matrix_uses_moduli() -> None:
    w = mixing_matrix(TOPOLOGIES["star"](5), "uniform")
    moduli = sorted(torch.linalg.eigvals(w).abs().tolist(), reverse=True)
    assert spectral_gap(w) == pytest.approx(1 - moduli[1], abs=1e-12)


def test_denser_graphs_mix_faster() -> None:
    gaps = [
        spectral_gap(mixing_matrix(TOPOLOGIES[k](16)))
        for k in ("ring", "torus", "exponential", "complete")
    ]
    assert gaps == sorted(gaps)


def test_spectral_gap_edge_cases() -> None:
    assert spectral_gap(torch.ones(1, 1, dtype=torch.float64)) == 1.0
    with pytest.raises(ValueError, match=r"square matrix"):
        spectral_gap(torch.ones(2, 3))


def test_2048_node_matrix() -> None:
    w = mixing_matrix(TOPOLOGIES["random_regular"](2048, seed=0))
    assert w.shape == (2048, 2048)
    torch.testing.assert_close(w.sum(0), torch.ones(2048, dtype=torch.float64))


def test_lazy_metropolis_is_he_et_als_normalized_ring() -> None:
    """(W + (1 - m) I) / (2 - m), m the smallest Metropolis self-weight (released code)."""
    graph = nx.cycle_graph(5)
    for i in range(5):
        graph.add_edges_from([(i, i + 5), (i, i + 10)])
    w = mixing_matrix(graph, "metropolis")
    lazy = mixing_matrix(graph, "lazy_metropolis")
    assert float(w[0, 0]) == pytest.approx(0.2) and float(w[0, 5]) == pytest.approx(0.2)
    assert float(lazy[0, 0]) == pytest.approx(1.0 / 1.8)  # (0.2 + 0.8) / 1.8
    assert float(lazy[0, 5]) == pytest.approx(0.2 / 1.8)
    assert torch.allclose(lazy, lazy.T)
    assert torch.allclose(lazy.sum(1), torch.ones(15, dtype=lazy.dtype))
