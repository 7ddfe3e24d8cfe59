"""A PNG picture of a topology: :func:`draw`.

Rings (connected, every degree 2) are drawn on a circle; other graphs up to
:data:`LABEL_MAX_NODES` nodes with a seeded spring layout and node labels; larger
graphs with the spectral layout (one sparse eigensolve instead of hundreds of
force-directed iterations), without labels. Above :data:`MAX_DRAWN_EDGES` edges a
seeded sample of them is drawn (the title says so). Byzantine nodes are red, with a
legend. Drawing uses matplotlib's Agg canvas directly, never pyplot's global state.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, cast

import networkx as nx
import numpy as np

from p2pfl.errors import TopologyError
from p2pfl.topology.model import Topology

LABEL_MAX_NODES = 300
MAX_DRAWN_EDGES = 20_000
HONEST_COLOUR = "#4878a8"
BYZANTINE_COLOUR = "#d62728"


def _is_ring(g: nx.Graph) -> bool:
    return g.number_of_nodes() >= 3 and all(d == 2 for _, d in g.degree()) and nx.is_connected(g)


def layout(g: nx.Graph, seed: int = 0) -> dict[Any, np.ndarray]:
    """Node positions: circular for rings, spring for small graphs, spectral for large ones."""
    n = g.number_of_nodes()
    if n <= 2 or _is_ring(g):
        return nx.circular_layout(sorted(g.nodes))
    if n <= LABEL_MAX_NODES:
        return nx.spring_layout(g, seed=seed)
    if nx.is_connected(g):
        try:
            return nx.spectral_layout(g)
        except Exception:  # eigensolver failure: fall back to the always-available circle
            pass
    return nx.circular_layout(sorted(g.nodes))


def draw(t: Topology, path: str | os.PathLike[str], *, seed: int = 0) -> None:
    """Write a PNG of ``t`` to ``path``: honest nodes blue, Byzantine nodes red, a legend."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.collections import LineCollection
    from matplotlib.figure import Figure

    g = t.graph
    n = t.n
    if n == 0:
        raise TopologyError("cannot draw a topology with no nodes")
    pos = layout(g, seed)
    order = sorted(g.nodes)
    xy = np.array([pos[i] for i in order], dtype=np.float64).reshape(-1, 2)
    index = {v: k for k, v in enumerate(order)}
    ends = np.array([(index[u], index[v]) for u, v in g.edges()], dtype=np.int64).reshape(-1, 2)
    m = len(ends)
    if m > MAX_DRAWN_EDGES:  # a sample shows the density as well, in a fraction of the time
        keep = np.random.default_rng(seed).choice(m, size=MAX_DRAWN_EDGES, replace=False)
        ends = ends[np.sort(keep)]
    segments = np.stack([xy[ends[:, 0]], xy[ends[:, 1]]], axis=1)  # (m, 2 ends, 2 coords)

    fig = Figure(figsize=(7, 7), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.set_axis_off()
    ax.set_aspect("equal")
    many = n > LABEL_MAX_NODES
    edge_alpha = 0.5 if len(segments) < 2000 else max(0.03, 0.5 * 2000 / len(segments))
    ax.add_collection(
        LineCollection(
            cast(Any, segments), colors="#888888", linewidths=0.6, alpha=edge_alpha, zorder=1
        )
    )
    size = 300.0 if n <= 30 else max(4.0, 9000.0 / n)
    byz = np.array([i in t.byzantine for i in order])
    for mask, colour, label in (
        (~byz, HONEST_COLOUR, f"honest ({int((~byz).sum())})"),
        (byz, BYZANTINE_COLOUR, f"Byzantine ({int(byz.sum())})"),
    ):
        if mask.any():
            ax.scatter(
                xy[mask, 0], xy[mask, 1], s=size, c=colour, label=label, zorder=2, linewidths=0
            )
    if not many:
        fontsize = 8 if n <= 30 else max(3.0, 8 - n / 50)
        for i, (x, y) in zip(order, xy, strict=True):
            colour = "white" if n <= 30 else "black"
            ax.annotate(
                str(i), (x, y), ha="center", va="center", fontsize=fontsize, color=colour, zorder=3
            )
    ax.autoscale_view()
    ax.margins(0.05)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=2, fontsize=9, frameon=False)
    title = t.name or "topology"
    shown = f" ({len(ends)} drawn)" if len(ends) < m else ""
    ax.set_title(f"{title}: {n} nodes, {m} edges{shown}", fontsize=11)
    p = Path(path)
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(p, format="png")
    except OSError as exc:
        raise TopologyError(f"{p}: cannot write: {exc.strerror or exc}") from None
