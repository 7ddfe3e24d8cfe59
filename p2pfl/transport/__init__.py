"""Transports: move wire frames between nodes (see :mod:`p2pfl.transport.base`).

``ZmqTransport`` runs over ZeroMQ sockets; ``MemoryTransport`` on a ``MemoryNetwork``
inside one process, for tests. Both implement :class:`Transport` and pass the same
contract test.
"""

from p2pfl.transport.base import (
    Received,
    SocketHook,
    SocketRole,
    Transport,
    TransportClosed,
    TransportError,
    TransportOptions,
    TransportStats,
    UnknownPeerError,
    normalize_address,
)
from p2pfl.transport.memory import MemoryNetwork, MemoryTransport
from p2pfl.transport.ports import free_tcp_ports
from p2pfl.transport.zeromq import ZmqTransport

__all__ = [
    "MemoryNetwork",
    "MemoryTransport",
    "Received",
    "SocketHook",
    "SocketRole",
    "Transport",
    "TransportClosed",
    "TransportError",
    "TransportOptions",
    "TransportStats",
    "UnknownPeerError",
    "ZmqTransport",
    "free_tcp_ports",
    "normalize_address",
]
