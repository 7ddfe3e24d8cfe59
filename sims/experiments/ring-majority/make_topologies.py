"""Write the two topologies of experiment (c) into ``topologies/`` (run by ``run.sh``).

Both are the same ring lattice: 24 nodes, each joined to the 3 nearest on either side
(degree 6; ``watts_strogatz`` with ``p = 0``). They differ in who is Byzantine:

* ``majority.toml``: every third node (2, 5, 8, ...; 8 of 24). Each honest node has
  2 Byzantine neighbours among its 6, so 5 of the 7 vectors it aggregates are honest.
* ``no-majority.toml``: every odd node (12 of 24). Each honest node has 4 Byzantine
  neighbours among its 6: only 3 of its 7 vectors are honest. The honest nodes still
  form a connected ring through their +-2 links.

The script checks these counts before writing.
"""

from __future__ import annotations

from pathlib import Path

from p2pfl.topology import TOPOLOGIES, Topology, save_topology

HERE = Path(__file__).resolve().parent
N = 24
SETS = {
    "majority": (frozenset(range(2, N, 3)), 2),
    "no-majority": (frozenset(range(1, N, 2)), 4),
}


def main() -> None:
    graph = TOPOLOGIES["watts_strogatz"](N, k=6, p=0.0)
    for name, (byzantine, per_node) in SETS.items():
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
