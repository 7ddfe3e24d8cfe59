"""Graphs from other tools: :func:`import_graph` reads edge lists, GraphML and node-link JSON.

Formats, chosen by file suffix:

* ``.edges``, ``.edgelist``, ``.txt``: one edge ``u v`` (two integers) per line;
  ``#`` starts a comment; blank lines are skipped. An edge listed in both
  directions is one edge (many tools write undirected graphs that way).
* ``.graphml``: GraphML, read with networkx; directed graphs are made undirected
  and parallel edges merged.
* ``.json``: networkx's node-link JSON (``{"nodes": [{"id": ...}], "links": [{"source":
  ..., "target": ...}]}``; ``"edges"`` is accepted for ``"links"``).

Node ids must be the integers ``0..n-1`` (GraphML's string ids ``"0"``, ``"1"`` count),
the numbering every p2pfl topology uses. With ``relabel=True`` other ids are
renumbered ``0..n-1`` in sorted order instead. Self-loops are rejected.
"""

from __future__ import annotations

import json
import os
from collections.abc import Hashable, Iterable
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import networkx as nx
import numpy as np

from p2pfl.errors import TopologyError
from p2pfl.topology.builders import from_edges

EDGE_LIST_SUFFIXES = (".edges", ".edgelist", ".txt")
SUFFIXES = (*EDGE_LIST_SUFFIXES, ".graphml", ".json")


def import_graph(path: str | os.PathLike[str], *, relabel: bool = False) -> nx.Graph:
    """The undirected graph in ``path`` (see the module docstring), on nodes ``0..n-1``."""
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix not in SUFFIXES:
        raise TopologyError(
            f"{p}: unknown graph format {suffix or '(no suffix)'!r}; "
            f"use one of {', '.join(SUFFIXES)}"
        )
    try:
        if suffix in EDGE_LIST_SUFFIXES:
            nodes, edges = _read_edge_list(p)
        elif suffix == ".graphml":
            nodes, edges = _read_graphml(p)
        else:
            nodes, edges = _read_node_link(p)
    except FileNotFoundError:
        raise TopologyError(f"{p}: no such file") from None
    except IsADirectoryError:
        raise TopologyError(f"{p}: is a directory, not a graph file") from None
    except UnicodeDecodeError:
        raise TopologyError(f"{p}: not UTF-8 text") from None
    except OSError as exc:
        raise TopologyError(f"{p}: cannot read: {exc.strerror or exc}") from None
    return _numbered(p, nodes, edges, relabel)


def _read_edge_list(p: Path) -> tuple[list[Hashable], list[tuple[Hashable, Hashable]]]:
    edges: list[tuple[int, int]] = []
    with p.open(encoding="utf-8") as fh:
        for lineno, raw in enumerate(fh, start=1):
            text = raw.split("#", 1)[0].strip()
            if not text:
                continue
            fields = text.split()
            if len(fields) != 2:
                raise TopologyError(
                    f"{p}: line {lineno}: expected 'u v' (two node ids), got {text!r}"
                )
            try:
                u, v = int(fields[0]), int(fields[1])
            except ValueError:
                raise TopologyError(
                    f"{p}: line {lineno}: node ids must be integers, got {text!r}"
                ) from None
            if u == v:
                raise TopologyError(f"{p}: line {lineno}: self-loop on node {u}")
            edges.append((u, v))
    if not edges:
        raise TopologyError(f"{p}: no edges found")
    return [*sorted({x for e in edges for x in e})], [*edges]


def _read_graphml(p: Path) -> tuple[list[Hashable], list[tuple[Hashable, Hashable]]]:
    if not p.exists():
        raise FileNotFoundError(p)
    try:
        g = nx.read_graphml(p, node_type=str)
    except (nx.NetworkXError, ValueError, KeyError, ElementTree.ParseError) as exc:
        raise TopologyError(f"{p}: not valid GraphML: {exc}") from None
    return list(g.nodes), [(u, v) for u, v in g.edges()]


def _read_node_link(p: Path) -> tuple[list[Hashable], list[tuple[Hashable, Hashable]]]:
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise TopologyError(f"{p}: invalid JSON: {exc}") from None
    if not isinstance(data, dict) or "nodes" not in data:
        raise TopologyError(f"{p}: expected node-link JSON: an object with 'nodes' and 'links'")
    links_key = "links" if "links" in data else "edges"
    raw_nodes, raw_links = data["nodes"], data.get(links_key, [])
    if not isinstance(raw_nodes, list) or not isinstance(raw_links, list):
        raise TopologyError(f"{p}: 'nodes' and '{links_key}' must be arrays")
    nodes: list[Hashable] = []
    for k, node in enumerate(raw_nodes):
        if not isinstance(node, dict) or "id" not in node:
            raise TopologyError(f"{p}: nodes[{k}]: expected an object with an 'id'")
        nodes.append(_hashable(node["id"], f"{p}: nodes[{k}].id"))
    edges: list[tuple[Hashable, Hashable]] = []
    for k, link in enumerate(raw_links):
        if not isinstance(link, dict) or "source" not in link or "target" not in link:
            raise TopologyError(
                f"{p}: {links_key}[{k}]: expected an object with 'source' and 'target'"
            )
        edges.append(
            (
                _hashable(link["source"], f"{p}: {links_key}[{k}].source"),
                _hashable(link["target"], f"{p}: {links_key}[{k}].target"),
            )
        )
    return nodes, edges


def _hashable(value: Any, where: str) -> Hashable:
    if isinstance(value, (bool, float)) or not isinstance(value, (int, str)):
        raise TopologyError(f"{where}: node ids must be integers or strings, got {value!r}")
    return value


def _as_int(x: Hashable) -> int | None:
    if isinstance(x, int) and not isinstance(x, bool):
        return x
    if isinstance(x, str) and x.isascii() and x.isdigit():
        return int(x)
    return None


def _numbered(
    p: Path,
    nodes: Iterable[Hashable],
    edges: list[tuple[Hashable, Hashable]],
    relabel: bool,
) -> nx.Graph:
    seen = dict.fromkeys(nodes)  # unique, first-seen order
    for u, v in edges:
        seen.setdefault(u)
        seen.setdefault(v)
    node_list = list(seen)
    if not node_list:
        raise TopologyError(f"{p}: the graph has no nodes")
    loops = [u for u, v in edges if u == v]
    if loops:
        raise TopologyError(f"{p}: self-loop on node {loops[0]!r}")
    n = len(node_list)
    as_int = {x: _as_int(x) for x in node_list}
    mapping: dict[Hashable, int]
    if {as_int[x] for x in node_list} == set(range(n)):
        mapping = {x: i for x, i in as_int.items() if i is not None}
    elif relabel:
        # integer-like ids first, in numeric order, then the rest in string order
        def order(x: Hashable) -> tuple[int, int, str]:
            i = as_int[x]
            return (0, i, "") if i is not None else (1, 0, str(x))

        mapping = {x: k for k, x in enumerate(sorted(node_list, key=order))}
    else:
        shown = ", ".join(repr(x) for x in node_list[:5])
        raise TopologyError(
            f"{p}: node ids must be the integers 0..{n - 1}, got {shown}"
            f"{', ...' if n > 5 else ''}; import with relabel (--relabel) to renumber them "
            "in sorted order"
        )
    pairs = np.array([(mapping[u], mapping[v]) for u, v in edges], dtype=np.int64)
    return from_edges(n, pairs.reshape(-1, 2))
