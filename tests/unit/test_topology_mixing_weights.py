"""``mixing_weights``: the gossip matrix by rows reads exactly as the dense matrix, in O(N + E)."""

from __future__ import annotations

import networkx as nx
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pfl.topology import mixing_matrix, mixing_weights

SCHEMES = ["metropolis", "uniform", "lazy_metropolis"]


@settings(max_examples=30, deadline=None)
@given(
    n=st.integers(2, 40),
    p=st.floats(0.05, 0.9),
    seed=st.integers(0, 1000),
    scheme=st.sampled_from(SCHEMES),
)
def test_rows_read_as_the_dense_matrix(n: int, p: float, seed: int, scheme: str) -> None:
    # Prepare
    graph = nx.gnp_random_graph(n, p, seed=seed)
    w = mixing_weights(graph, scheme)  # type: ignore[arg-type]
    dense = w.dense()
    # Assert: every form of index the rounds use, and the stochastic rows
    for i in range(n):
        nbrs = sorted(graph.neighbors(i))
        assert torch.equal(w[i, nbrs], dense[i, nbrs])
        assert torch.equal(w[i, list(range(n))], dense[i])
        if nbrs:
            assert torch.equal(w[nbrs, i], dense[nbrs, i])
        assert float(w[i, i]) == float(dense[i, i])
    torch.testing.assert_close(dense.sum(1), torch.ones(n, dtype=torch.float64))
    if scheme != "uniform":
        torch.testing.assert_close(dense, dense.T)
    torch.testing.assert_close(dense, mixing_matrix(graph, scheme))  # type: ignore[arg-type]


def test_a_large_graph_is_stored_in_linear_space() -> None:
    n = 200_000
    w = mixing_weights(nx.cycle_graph(n))
    assert w.values.nbytes == 8 * 3 * n  # two neighbours and itself per row
    assert float(w[0, n - 1]) == pytest.approx(1 / 3)
    assert float(w[0, n // 2]) == 0.0
    assert w[[1, n - 1], 0].tolist() == pytest.approx([1 / 3, 1 / 3])


def test_bad_indices_are_errors() -> None:
    w = mixing_weights(nx.path_graph(3))
    with pytest.raises(IndexError, match="out of range"):
        w[3, [0]]
    with pytest.raises(TypeError, match=r"\[i, j\]"):
        w[[0, 1], [0, 1]]
