"""Transports: move wire frames between nodes (see :mod:`p2pfl.transport.base`).

``ZmqTransport`` runs over ZeroMQ sockets; ``MemoryTransport`` on a ``MemoryNetwork``
inside one process, for tests. Both implement :class:`Transport` and pass the same
contract test. :func:`inbound_frame_limit` derives a node's inbound size limit from
its model (:mod:`p2pfl.transport.limits`); :mod:`p2pfl.transport.guard` bounds what
each incoming ZeroMQ connection can make the node hold.
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
from p2pfl.transport.limits import inbound_frame_limit
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
    "inbound_frame_limit",
    "normalize_address",
]
