"""The TOML topology file: :func:`load_topology`, :func:`save_topology`.

The format is documented in ``docs/topology-format.md``::

    name = "ring-4"                       # optional; default: the file's stem
    edges = [[0, 1], [1, 2], [2, 3], [0, 3]]

    [[nodes]]                             # one table per node, ids exactly 0..n-1
    id = 0
    address = "127.0.0.1:5555"            # optional
    public_key = "<40 Z85 characters>"    # optional
    byzantine = false                     # optional

Edges may also be written as ``[[edges]]`` tables with keys ``u`` and ``v``. Every
problem is a :class:`~p2pfl.errors.TopologyError` that names the file and the key
(``ring.toml: edges[3]: node 7 is not declared in [[nodes]]``).

The writer is part of this module (no TOML-writing dependency): it emits only
integers, booleans, arrays and basic strings, escaped per TOML 1.0, so
``load_topology(save_topology(t))`` gives back a topology equal to ``t``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import networkx as nx

from p2pfl._compat import tomllib
from p2pfl.errors import TopologyError
from p2pfl.topology.checks import check_public_key, check_topology, parse_address
from p2pfl.topology.model import Topology

TOP_LEVEL_KEYS = ("name", "edges", "nodes")
NODE_KEYS = ("id", "address", "public_key", "byzantine")
EDGES_PER_LINE = 8


# --- reading ---------------------------------------------------------------------


def load_topology(path: str | os.PathLike[str], *, check: bool = True) -> Topology:
    """Read a topology TOML file; with ``check`` (the default) also :func:`check_topology` it.

    ``check=False`` still rejects anything the file cannot mean (bad TOML, wrong
    types, unknown keys, duplicate or undeclared ids, self-loops, malformed
    addresses or keys) but accepts a disconnected graph, e.g. to describe it.
    """
    p = Path(path)
    try:
        with p.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise TopologyError(f"{p}: no such topology file") from None
    except IsADirectoryError:
        raise TopologyError(f"{p}: is a directory, not a topology file") from None
    except OSError as exc:
        raise TopologyError(f"{p}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise TopologyError(f"{p}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise TopologyError(f"{p}: invalid TOML: {exc}") from None
    return topology_from_dict(data, str(p), default_name=p.stem, check=check)


def loads_topology(text: str, source: str = "<string>", *, check: bool = True) -> Topology:
    """:func:`load_topology` for TOML text; ``source`` names it in error messages."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise TopologyError(f"{source}: invalid TOML: {exc}") from None
    return topology_from_dict(data, source, check=check)


def topology_from_dict(
    data: Mapping[str, Any], source: str, *, default_name: str = "", check: bool = True
) -> Topology:
    """A :class:`Topology` from a parsed TOML table; errors are prefixed with ``source``."""
    unknown = sorted(set(data) - set(TOP_LEVEL_KEYS))
    if unknown:
        raise TopologyError(
            f"{source}: {unknown[0]}: unknown key; valid keys: {', '.join(TOP_LEVEL_KEYS)}"
        )
    name = data.get("name", default_name)
    if not isinstance(name, str):
        raise TopologyError(f"{source}: name: expected a string, got {name!r}")
    if "nodes" not in data:
        raise TopologyError(f"{source}: nodes: missing; declare every node in a [[nodes]] table")
    nodes = data["nodes"]
    if not isinstance(nodes, list) or not all(isinstance(x, dict) for x in nodes):
        raise TopologyError(f"{source}: nodes: expected [[nodes]] tables, got {nodes!r:.80}")
    if not nodes:
        raise TopologyError(f"{source}: nodes: the topology has no nodes")
    n = len(nodes)
    addresses: dict[int, str] = {}
    keys: dict[int, str] = {}
    byzantine: set[int] = set()
    where_id: dict[int, int] = {}
    for k, entry in enumerate(nodes):
        at = f"{source}: nodes[{k}]"
        i = _parse_node(entry, at, addresses, keys, byzantine)
        if i in where_id:
            raise TopologyError(f"{at}.id: duplicate node id {i} (also nodes[{where_id[i]}])")
        where_id[i] = k
    outside = sorted(i for i in where_id if not 0 <= i < n)
    if outside:
        missing = sorted(set(range(n)) - set(where_id))
        raise TopologyError(
            f"{source}: nodes: ids must be exactly 0..{n - 1} for {n} nodes; "
            f"id {outside[0]} is out of range and id {missing[0]} is missing"
        )
    graph = nx.Graph()
    graph.add_nodes_from(range(n))
    graph.add_edges_from(_parse_edges(data.get("edges", []), source, n))
    t = Topology(
        graph=graph,
        addresses=addresses,
        byzantine=frozenset(byzantine),
        public_keys=keys,
        name=name,
    )
    if check:
        try:
            check_topology(t)
        except TopologyError as exc:
            raise TopologyError(f"{source}: {exc}") from None
    return t


def _parse_node(
    entry: Mapping[str, Any],
    at: str,
    addresses: dict[int, str],
    keys: dict[int, str],
    byzantine: set[int],
) -> int:
    unknown = sorted(set(entry) - set(NODE_KEYS))
    if unknown:
        raise TopologyError(f"{at}.{unknown[0]}: unknown key; valid keys: {', '.join(NODE_KEYS)}")
    if "id" not in entry:
        raise TopologyError(f"{at}.id: missing")
    i = entry["id"]
    if isinstance(i, bool) or not isinstance(i, int):
        raise TopologyError(f"{at}.id: expected an integer, got {i!r}")
    if "address" in entry:
        address = entry["address"]
        if not isinstance(address, str):
            raise TopologyError(f"{at}.address: expected a 'host:port' string, got {address!r}")
        try:
            parse_address(address)
        except TopologyError as exc:
            raise TopologyError(f"{at}.address: {exc}") from None
        addresses[i] = address
    if "public_key" in entry:
        key = entry["public_key"]
        try:
            check_public_key(key)
        except TopologyError as exc:
            raise TopologyError(f"{at}.public_key: {exc}") from None
        keys[i] = key
    flag = entry.get("byzantine", False)
    if not isinstance(flag, bool):
        raise TopologyError(f"{at}.byzantine: expected true or false, got {flag!r}")
    if flag:
        byzantine.add(i)
    return i


def _parse_edges(edges: Any, source: str, n: int) -> list[tuple[int, int]]:
    if not isinstance(edges, list):
        raise TopologyError(
            f"{source}: edges: expected an array of [u, v] pairs, got {edges!r:.80}"
        )
    out: list[tuple[int, int]] = []
    first: dict[tuple[int, int], int] = {}
    for k, e in enumerate(edges):
        at = f"{source}: edges[{k}]"
        if isinstance(e, dict):
            if set(e) != {"u", "v"}:
                raise TopologyError(
                    f"{at}: an [[edges]] table needs exactly the keys u and v, got {sorted(e)}"
                )
            pair = [e["u"], e["v"]]
        elif isinstance(e, list):
            pair = e
        else:
            raise TopologyError(f"{at}: expected [u, v], got {e!r}")
        if len(pair) != 2 or any(isinstance(x, bool) or not isinstance(x, int) for x in pair):
            raise TopologyError(f"{at}: expected [u, v] with two integer node ids, got {e!r}")
        u, v = pair
        for x in (u, v):
            if not 0 <= x < n:
                raise TopologyError(f"{at}: node {x} is not declared in [[nodes]] (ids 0..{n - 1})")
        if u == v:
            raise TopologyError(f"{at}: self-loop on node {u}")
        key = (min(u, v), max(u, v))
        if key in first:
            raise TopologyError(f"{at}: duplicate edge {u}-{v} (also edges[{first[key]}])")
        first[key] = k
        out.append(key)
    return out


# --- writing ---------------------------------------------------------------------

_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\b": "\\b",
    "\t": "\\t",
    "\n": "\\n",
    "\f": "\\f",
    "\r": "\\r",
}


def toml_string(s: str) -> str:
    """``s`` as a TOML basic string: quotes, backslashes and control characters escaped."""
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        raise TopologyError(f"string {s!r} has characters that UTF-8 cannot encode") from None
    out = []
    for ch in s:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04X}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def dumps_topology(t: Topology) -> str:
    """The TOML text of ``t`` (the format of :func:`load_topology`).

    Node ids must be ``0..n-1`` and edges free of self-loops, since the file could
    not express anything else; connectivity is not required.
    """
    n = t.n
    if set(t.graph.nodes) != set(range(n)):
        raise TopologyError(f"cannot save: node ids must be exactly 0..{n - 1}")
    edges = t.edge_list()
    if any(u == v for u, v in edges):
        raise TopologyError("cannot save: the graph has self-loops")
    for label, mapping in (("address", t.addresses), ("public key", t.public_keys)):
        stray = sorted(i for i in mapping if i not in t.graph)
        if stray:
            raise TopologyError(f"cannot save: {label} given for node {stray[0]}, not a node")
    stray_byz = sorted(i for i in t.byzantine if i not in t.graph)
    if stray_byz:
        raise TopologyError(f"cannot save: Byzantine id {stray_byz[0]} is not a node")
    lines = [
        f"# p2pfl topology: {n} nodes, {len(edges)} edges, {len(t.byzantine)} Byzantine",
        "# format: docs/topology-format.md",
        f"name = {toml_string(t.name)}",
    ]
    if edges:
        lines.append("edges = [")
        for start in range(0, len(edges), EDGES_PER_LINE):
            chunk = edges[start : start + EDGES_PER_LINE]
            lines.append("    " + " ".join(f"[{u}, {v}]," for u, v in chunk))
        lines.append("]")
    else:
        lines.append("edges = []")
    for i in range(n):
        lines += ["", "[[nodes]]", f"id = {i}"]
        if i in t.addresses:
            lines.append(f"address = {toml_string(t.addresses[i])}")
        if i in t.public_keys:
            lines.append(f"public_key = {toml_string(t.public_keys[i])}")
        if i in t.byzantine:
            lines.append("byzantine = true")
    return "\n".join(lines) + "\n"


def save_topology(t: Topology, path: str | os.PathLike[str]) -> None:
    """Write ``t`` to ``path`` as TOML (parent folders created; replaced atomically)."""
    p = Path(path)
    text = dumps_topology(t)
    tmp = p.with_name(p.name + ".tmp")
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(text, encoding="utf-8", newline="\n")
        os.replace(tmp, p)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise TopologyError(f"{p}: cannot write: {exc.strerror or exc}") from None
