"""Validation of a :class:`~p2pfl.topology.Topology`, one clear message per problem.

:func:`check_topology` requires node ids ``0..n-1`` (it does not renumber them: a
node's id is its identity on the wire and in the mixing matrix), no self-loops,
well-formed and distinct ``host:port`` addresses, 40-character Z85 public keys,
Byzantine ids that are nodes, at least one honest node, and a connected honest
subgraph (honest nodes that cannot reach each other without relaying through
Byzantine nodes can never agree). Problems that only exist in a file (duplicate
ids or edges, edges naming undeclared nodes) are reported by the file loader.
"""

from __future__ import annotations

import ipaddress
import re

import networkx as nx

from p2pfl.errors import TopologyError
from p2pfl.topology.model import Topology

# ZeroMQ's Z85 alphabet (RFC 32/Z85); a CurveZMQ key is 32 bytes = 40 characters.
Z85_ALPHABET = frozenset(
    "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#"
)
Z85_KEY_LENGTH = 40
_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9_]([A-Za-z0-9_-]*[A-Za-z0-9_])?(\.[A-Za-z0-9_]([A-Za-z0-9_-]*[A-Za-z0-9_])?)*$"
)


def parse_address(address: str) -> tuple[str, int]:
    """``"host:port"`` -> ``(host, port)``; host a name, IPv4, or ``[IPv6]``; port 1..65535.

    Raises :class:`TopologyError` describing what is wrong.
    """
    if not isinstance(address, str):
        raise TopologyError(f"address {address!r}: expected a 'host:port' string")
    host, sep, port_text = address.rpartition(":")
    if not sep or not host:
        raise TopologyError(f"address {address!r}: expected 'host:port'")
    if not port_text.isascii() or not port_text.isdigit():
        raise TopologyError(f"address {address!r}: port {port_text!r} is not a number")
    port = int(port_text)
    if not 1 <= port <= 65535:
        raise TopologyError(f"address {address!r}: port {port} is outside 1..65535")
    if host.startswith("[") and host.endswith("]"):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            raise TopologyError(f"address {address!r}: {host} is not an IPv6 address") from None
    elif not _HOSTNAME.match(host):
        raise TopologyError(
            f"address {address!r}: host {host!r} is not a host name or IPv4 address "
            "(write IPv6 addresses in brackets: [::1]:5555)"
        )
    return host, port


def check_public_key(key: str) -> None:
    """Raise :class:`TopologyError` unless ``key`` is a 40-character Z85 string."""
    if not isinstance(key, str) or len(key) != Z85_KEY_LENGTH:
        shown = len(key) if isinstance(key, str) else type(key).__name__
        raise TopologyError(
            f"public key {key!r}: expected {Z85_KEY_LENGTH} Z85 characters, got {shown}"
        )
    bad = sorted(set(key) - Z85_ALPHABET)
    if bad:
        raise TopologyError(f"public key {key!r}: characters {''.join(bad)!r} are not Z85")


def _few(items: list[int], limit: int = 8) -> str:
    shown = ", ".join(str(i) for i in items[:limit])
    return shown + (f", ... ({len(items)} in all)" if len(items) > limit else "")


def check_topology(t: Topology) -> None:
    """Raise :class:`TopologyError` naming the first problem found in ``t``; return if valid."""
    g = t.graph
    n = g.number_of_nodes()
    if n == 0:
        raise TopologyError("the topology has no nodes")
    nodes = list(g.nodes)
    not_int = [i for i in nodes if isinstance(i, bool) or not isinstance(i, int)]
    if not_int:
        raise TopologyError(
            f"node ids must be the integers 0..{n - 1}; got non-integer ids {not_int[:8]!r}"
        )
    if set(nodes) != set(range(n)):
        outside = sorted(i for i in nodes if not 0 <= i < n)
        missing = sorted(set(range(n)) - set(nodes))
        raise TopologyError(
            f"node ids must be exactly 0..{n - 1} (ids are not renumbered); "
            f"missing: {_few(missing)}; out of range: {_few(outside)}"
        )
    loops = sorted(u for u, _ in nx.selfloop_edges(g))
    if loops:
        raise TopologyError(
            f"self-loop on node(s) {_few(loops)}: a node cannot be its own neighbour"
        )
    _check_addresses(t, n)
    for i, key in sorted(t.public_keys.items()):
        if i not in g:
            raise TopologyError(f"public key given for node {i}, which is not a node (0..{n - 1})")
        try:
            check_public_key(key)
        except TopologyError as exc:
            raise TopologyError(f"node {i}: {exc}") from None
    not_nodes = sorted(i for i in t.byzantine if i not in g)
    if not_nodes:
        raise TopologyError(f"Byzantine id(s) {_few(not_nodes)} are not nodes (0..{n - 1})")
    honest = t.honest_nodes
    if not honest:
        raise TopologyError(f"all {n} nodes are Byzantine; at least one must be honest")
    sizes = sorted((len(c) for c in nx.connected_components(g.subgraph(honest))), reverse=True)
    if len(sizes) > 1:
        who = "the honest nodes" if t.byzantine else "the graph"
        raise TopologyError(
            f"{who} form {len(sizes)} disconnected components of sizes {_few(sizes)}; "
            "every honest node must reach every other through honest nodes"
        )


def _check_addresses(t: Topology, n: int) -> None:
    seen: dict[str, int] = {}
    for i, address in sorted(t.addresses.items()):
        if i not in t.graph:
            raise TopologyError(f"address given for node {i}, which is not a node (0..{n - 1})")
        try:
            parse_address(address)
        except TopologyError as exc:
            raise TopologyError(f"node {i}: {exc}") from None
        if address in seen:
            raise TopologyError(f"nodes {seen[address]} and {i} share the address {address}")
        seen[address] = i
