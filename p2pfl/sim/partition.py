"""Which rank simulates which nodes, for the distributed simulator.

Every rank of a distributed run computes the same partition from the graph and the
seed, so no rank has to send it to another. Two candidate partitions are built and
the one that cuts fewer edges wins (ties: contiguous):

* ``contiguous``: node ids in order, cut into ``K`` blocks of sizes differing by at
  most one. Best for graphs whose ids follow the structure (ring, line, torus,
  Watts-Strogatz, dumbbell): a ring cut into ``K`` blocks cuts only ``K`` edges.
* ``communities``: nodes ordered by Louvain community (networkx
  ``louvain_communities``, seeded; Blondel et al. 2008, "Fast unfolding of
  communities in large networks"), largest community first and ids in order within
  one, then cut into ``K`` equal blocks. A METIS-like cut for graphs whose ids carry
  no structure; blocks stay balanced (the cost of a round is set by the largest).

A random regular graph has no communities to find: every partition cuts about
``(1 - 1/K)`` of its edges, and the halo then holds most boundary vectors.
"""

from __future__ import annotations

from dataclasses import dataclass

import networkx as nx
import torch

from p2pfl.errors import ConfigError
from p2pfl.seeding import derive_seed

PARTITION_STREAM = 0x9A27_D157


@dataclass(frozen=True)
class Partition:
    """``owner[i]``: the rank that simulates node ``i``; ``method`` says how it was chosen."""

    owner: torch.Tensor  # (N,) int64
    method: str  # "contiguous" or "communities"
    cut_edges: int
    ranks: int

    def nodes_of(self, rank: int) -> torch.Tensor:
        """The sorted global ids of the nodes ``rank`` simulates."""
        return (self.owner == rank).nonzero().flatten()

    def describe(self) -> dict[str, int | str | list[int]]:
        """For ``summary.json``: the method, the edges cut and the nodes per rank."""
        return {
            "ranks": self.ranks,
            "partition": self.method,
            "cut_edges": self.cut_edges,
            "nodes_per_rank": torch.bincount(self.owner, minlength=self.ranks).tolist(),
        }


def blocks(order: list[int], ranks: int) -> torch.Tensor:
    """``owner`` for ``order`` cut into ``ranks`` contiguous blocks of near-equal size."""
    n = len(order)
    owner = torch.empty(n, dtype=torch.int64)
    position = torch.arange(n, dtype=torch.int64)
    owner[torch.tensor(order, dtype=torch.int64)] = position * ranks // n
    return owner


def cut_edges(graph: nx.Graph, owner: torch.Tensor) -> int:
    """How many edges join nodes of different ranks."""
    if graph.number_of_edges() == 0:
        return 0
    edges = torch.tensor(list(graph.edges()), dtype=torch.int64)
    return int((owner[edges[:, 0]] != owner[edges[:, 1]]).sum())


def partition_nodes(graph: nx.Graph, ranks: int, seed: int) -> Partition:
    """The partition of ``graph``'s nodes ``0..N-1`` over ``ranks`` ranks (module docstring)."""
    n = graph.number_of_nodes()
    if ranks < 1:
        raise ConfigError(f"ranks: must be >= 1, got {ranks}")
    if ranks > n:
        raise ConfigError(
            f"torchrun: {ranks} ranks for {n} nodes (topology.n): every rank needs at least "
            "one node; start fewer processes"
        )
    contiguous = blocks(list(range(n)), ranks)
    best = Partition(contiguous, "contiguous", cut_edges(graph, contiguous), ranks)
    if ranks == 1 or best.cut_edges == 0:
        return best
    found = nx.community.louvain_communities(graph, seed=derive_seed(seed, PARTITION_STREAM))
    order = [i for c in sorted(found, key=lambda c: (-len(c), min(c))) for i in sorted(c)]
    grouped = blocks(order, ranks)
    cut = cut_edges(graph, grouped)
    if cut < best.cut_edges:
        return Partition(grouped, "communities", cut, ranks)
    return best
