"""Write the topologies of experiment (c) into ``topologies/`` (run by ``run.sh``).

He, Karimireddy and Jaggi's *malicious ring* (ClippedGossip, arXiv 2202.01545, Fig. 6;
``MaliciousRing`` in their released ``honest_majority.py``): 5 honest nodes ``0..4`` on
a cycle, and each honest node ``i`` with two Byzantine leaves of its own, ``i + 5`` and
``i + 10``:

* ``paper-ring-majority.toml`` (15 nodes): every honest node aggregates 3 honest
  vectors (its own and its two ring neighbours') and 2 Byzantine ones;
* ``paper-ring-no-majority.toml`` (16 nodes): one more Byzantine leaf, ``15``, on
  node 0, which then sees 3 Byzantine vectors and 3 honest ones: no honest majority.

The earlier set-up, kept beside it, is a ring lattice: 24 nodes each joined to the 3
nearest on either side (degree 6; ``watts_strogatz`` with ``p = 0``):

* ``majority.toml``: every third node Byzantine (8 of 24): 2 of each honest node's 6
  neighbours;
* ``no-majority.toml``: every odd node Byzantine (12 of 24): 4 of 6 neighbours, so
  only 3 of the 7 vectors a node aggregates are honest.

The script checks these counts before writing.
"""

from __future__ import annotations

from pathlib import Path

import networkx as nx

from p2pfl.topology import TOPOLOGIES, Topology, save_topology

HERE = Path(__file__).resolve().parent
G = 5  # honest nodes of the paper's ring
N = 24  # nodes of the lattice
LATTICE = {
    "majority": (frozenset(range(2, N, 3)), 2),
    "no-majority": (frozenset(range(1, N, 2)), 4),
}


def paper_ring(honest_majority: bool) -> Topology:
    graph = nx.cycle_graph(G)
    for i in range(G):
        graph.add_edges_from([(i, i + G), (i, i + 2 * G)])
    if not honest_majority:
        graph.add_edge(0, 3 * G)
    byzantine = frozenset(range(G, graph.number_of_nodes()))
    for i in range(G):
        bad = sum(1 for j in graph.neighbors(i) if j in byzantine)
        if bad != (3 if i == 0 and not honest_majority else 2):
            raise SystemExit(f"paper ring: node {i} has {bad} Byzantine neighbours")
    name = "paper-ring-majority" if honest_majority else "paper-ring-no-majority"
    return Topology(graph=graph, byzantine=byzantine, name=name)


def main() -> None:
    for majority in (True, False):
        topology = paper_ring(majority)
        save_topology(topology, HERE / "topologies" / f"{topology.name}.toml")
    graph = TOPOLOGIES["watts_strogatz"](N, k=6, p=0.0)
    for name, (byzantine, per_node) in LATTICE.items():
        for i in sorted(set(graph.nodes) - byzantine):
            bad = sum(1 for j in graph.neighbors(i) if j in byzantine)
            if graph.degree(i) != 6 or bad != per_node:
                raise SystemExit(
                    f"{name}: node {i} has {bad} Byzantine neighbours of {graph.degree(i)}"
                )
        save_topology(
            Topology(graph=graph, byzantine=byzantine, name=f"ring-lattice-24-{name}"),
            HERE / "topologies" / f"{name}.toml",
        )


if __name__ == "__main__":
    main()
