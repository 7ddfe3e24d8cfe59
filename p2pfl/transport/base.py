"""The transport interface: send frames to a neighbour, receive frames from any.

A transport moves opaque frames (see :mod:`p2pfl.wire`) between nodes; it never
looks inside them. Each node has one transport::

    async with ZmqTransport(node_id, "127.0.0.1:5000", {1: "127.0.0.1:5001"}) as t:
        ok = await t.send(1, wire.encode(msg))    # False: dropped (counted), never blocks long
        peer, frames = await t.recv()             # next message from any neighbour

Addressing
    A node binds ONE incoming socket at its own address and keeps one outgoing
    connection per neighbour, keyed by the neighbour's node id (``peers`` maps id
    to address; ``host:port`` means ``tcp://host:port``). Messages therefore flow
    over a dedicated connection per (sender, receiver) pair.

Sender identity
    :meth:`Transport.recv` returns :class:`Received` ``(peer, frames)``: ``peer`` is
    the *transport-level* identity of the connection the message came in on, or
    ``None`` for a connection that gave none in p2pfl's form. With CurveZMQ (set up
    through the :attr:`TransportOptions.configure_socket` hook) it is the node id of
    the key that authenticated the connection (the ZAP ``User-Id``); without, it is
    the node id the connecting side declared (``ZmqTransport``: the ``X-P2PFL-Node``
    connection property), a claim any peer can forge. It is distinct from the
    ``sender`` claimed in the header; the node should reject a message whose two
    ids disagree. No identity a peer announces can disturb other connections.

Delivery
    Per (sender, receiver) pair messages arrive in order, or not at all. ``send``
    waits at most ``options.send_timeout_s`` for room in the neighbour's bounded
    queue (or for a live connection), then drops the message, counts it
    (:attr:`Transport.stats`) and returns ``False``. Gather sends to several
    neighbours concurrently, or a dead neighbour costs a timeout each. A message
    with a frame larger than ``options.max_message_bytes`` is discarded by the
    receiver without notice (ZeroMQ also disconnects that sender, which reconnects).

Lifecycle
    ``close()`` is idempotent; ``async with`` closes on exit. After ``close``, and
    for any ``send``/``recv`` still waiting when ``close`` is called, the call raises
    :class:`TransportClosed` (a plain task cancellation still raises
    ``CancelledError``). Uses ``asyncio.timeout`` and ``Task.uncancel`` (backported on Python 3.10: :mod:`p2pfl._compat`).

Implementations: :class:`p2pfl.transport.zeromq.ZmqTransport` (a PULL + one PUSH per neighbour) and
:class:`p2pfl.transport.memory.MemoryTransport` (in process, for tests); one
contract test (``tests/unit/test_transport_contract.py``) runs against both.
"""

from __future__ import annotations

import abc
import asyncio
import enum
import math
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, NamedTuple

import zmq

from p2pfl._compat import Self, timeout, uncancel
from p2pfl.errors import ConfigError, P2PFLError
from p2pfl.wire import Frame

__all__ = [
    "Received",
    "SocketHook",
    "SocketRole",
    "Transport",
    "TransportClosed",
    "TransportError",
    "TransportOptions",
    "TransportStats",
    "UnknownPeerError",
    "normalize_address",
]

MAX_NODE_ID = 2**31 - 1
_FRAME_TYPES = (bytes, bytearray, memoryview, zmq.Frame)


class TransportError(P2PFLError):
    """The transport cannot do what was asked (an address in use, a socket failure)."""


class TransportClosed(TransportError):
    """``send`` or ``recv`` on a transport that is (or became) closed."""


class UnknownPeerError(TransportError):
    """``send`` to a node id that is not one of this transport's neighbours."""

    def __init__(self, peer: int, known: frozenset[int]) -> None:
        self.peer = peer
        self.known = known
        listed = ", ".join(str(p) for p in sorted(known)) or "(none)"
        super().__init__(f"unknown peer {peer!r}; this node's neighbours are: {listed}")


class SocketRole(enum.Enum):
    """Which socket a :data:`SocketHook` is configuring."""

    INCOMING = "incoming"  # the node's one bound socket (ZeroMQ PULL; a CurveZMQ server)
    OUTGOING = "outgoing"  # one connecting socket per neighbour (PUSH; a CurveZMQ client)


#: ``hook(socket, role, peer)``: called for every ZeroMQ socket after p2pfl set its
#: options and before ``bind``/``connect`` (where CurveZMQ keys must be set);
#: ``peer`` is the neighbour's id for OUTGOING sockets, ``None`` for INCOMING.
SocketHook = Callable[[zmq.Socket[Any], SocketRole, int | None], None]


def _positive_int(value: object, name: str) -> None:
    if type(value) is not int or value < 1:
        raise ConfigError(f"TransportOptions.{name} must be a positive int, got {value!r}")


@dataclass(frozen=True)
class TransportOptions:
    """Settings shared by every transport, checked on construction.

    ``hwm``: messages queued per neighbour in each direction (ZeroMQ SNDHWM and
    RCVHWM); ``max_message_bytes``: largest frame accepted (ZeroMQ MAXMSGSIZE);
    ``heartbeat_ivl_ms`` / ``heartbeat_timeout_ms``: ZMTP heartbeats, a connection
    silent for the timeout is closed (and reconnected every ``reconnect_ivl_ms``,
    backing off to ``reconnect_ivl_max_ms``); ``handshake_ivl_ms``: a connection
    that has not completed its ZMTP/CurveZMQ handshake by then is dropped (ZeroMQ
    HANDSHAKE_IVL; libzmq's default is 30 s, a loopback CurveZMQ handshake takes a
    few ms); ``guard_interval_ms``: how often the connection guard checks what each
    incoming connection makes ZeroMQ hold (:mod:`p2pfl.transport.guard`; 0: no
    guard); ``send_timeout_s``: the longest a
    ``send`` waits before dropping; ``close_linger_ms``: how long ``close`` lets
    messages already queued (a goodbye, a last round's vector) go out before
    dropping them (ZeroMQ LINGER at close; 0: drop at once); ``configure_socket``:
    see :data:`SocketHook`.
    """

    hwm: int = 4
    max_message_bytes: int = 512 * 2**20
    heartbeat_ivl_ms: int = 1000
    heartbeat_timeout_ms: int = 5000
    reconnect_ivl_ms: int = 100
    reconnect_ivl_max_ms: int = 2000
    handshake_ivl_ms: int = 5000
    guard_interval_ms: int = 5
    send_timeout_s: float = 1.0
    close_linger_ms: int = 1000
    configure_socket: SocketHook | None = None

    def __post_init__(self) -> None:
        for name in (
            "hwm",
            "max_message_bytes",
            "heartbeat_ivl_ms",
            "heartbeat_timeout_ms",
            "reconnect_ivl_ms",
            "reconnect_ivl_max_ms",
            "handshake_ivl_ms",
        ):
            _positive_int(getattr(self, name), name)
        linger = self.close_linger_ms
        if type(linger) is not int or linger < 0:
            raise ConfigError(
                f"TransportOptions.close_linger_ms must be a non-negative int, got {linger!r}"
            )
        guard = self.guard_interval_ms
        if type(guard) is not int or not 0 <= guard <= 1000:
            raise ConfigError(
                f"TransportOptions.guard_interval_ms must be an int in [0, 1000], got {guard!r}"
            )
        if self.max_message_bytes > 2**62:
            raise ConfigError("TransportOptions.max_message_bytes must be at most 2**62")
        if self.heartbeat_timeout_ms < self.heartbeat_ivl_ms:
            raise ConfigError(
                f"TransportOptions.heartbeat_timeout_ms ({self.heartbeat_timeout_ms}) must be at "
                f"least heartbeat_ivl_ms ({self.heartbeat_ivl_ms})"
            )
        if self.reconnect_ivl_max_ms < self.reconnect_ivl_ms:
            raise ConfigError(
                f"TransportOptions.reconnect_ivl_max_ms ({self.reconnect_ivl_max_ms}) must be at "
                f"least reconnect_ivl_ms ({self.reconnect_ivl_ms})"
            )
        t = self.send_timeout_s
        if isinstance(t, bool) or not isinstance(t, int | float) or not math.isfinite(t) or t <= 0:
            raise ConfigError(
                f"TransportOptions.send_timeout_s must be a positive number of seconds, got {t!r}"
            )
        if self.configure_socket is not None and not callable(self.configure_socket):
            raise ConfigError("TransportOptions.configure_socket must be callable or None")


@dataclass(frozen=True)
class TransportStats:
    """Counters since the transport was created: messages queued, dropped and received.

    ``connections_cut``: incoming connections the transport closed because they made
    it hold more than their budget (``ZmqTransport``'s guard; always 0 elsewhere).
    """

    sent: int
    dropped: int
    received: int
    dropped_by_peer: Mapping[int, int]
    connections_cut: int = 0


class Received(NamedTuple):
    """One incoming message: the connection's node id (``None``: not announced) and its frames."""

    peer: int | None
    frames: list[Frame]


_SCHEMES = ("tcp://", "ipc://")
_HOST_PORT = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.\-*]+):([0-9]{1,5})$")


def normalize_address(address: str) -> str:
    """``host:port`` as ``tcp://host:port``; ``tcp://`` and ``ipc://`` endpoints unchanged."""
    if not isinstance(address, str):
        raise ConfigError(f"an address must be a str, got {type(address).__name__}")
    if address.startswith(_SCHEMES):
        rest = address.split("://", 1)[1]
        if not rest:
            raise ConfigError(f"address {address!r} has nothing after the scheme")
        if address.startswith("tcp://"):
            normalize_address(rest)  # validates host:port
        return address
    match = _HOST_PORT.match(address)
    if match is None or int(match.group(2)) > 65535:
        raise ConfigError(f"address {address!r} is not host:port, tcp://host:port or ipc://path")
    return f"tcp://{address}"


def _check_node_id(value: object, what: str) -> int:
    if type(value) is not int or not 0 <= value <= MAX_NODE_ID:
        raise ConfigError(f"{what} must be an int in [0, {MAX_NODE_ID}], got {value!r}")
    return value


class Transport(abc.ABC):
    """Frames to neighbours, frames from anyone: the interface the node codes against.

    Subclasses implement ``_send``, ``_recv``, ``_close`` and ``endpoint``; this
    class holds what must behave the same everywhere: checks, the send timeout,
    the drop counters and the close semantics.
    """

    def __init__(self, node_id: int, peers: Mapping[int, str], options: TransportOptions) -> None:
        self.node_id = _check_node_id(node_id, "node_id")
        if not isinstance(options, TransportOptions):
            raise ConfigError(f"options must be TransportOptions, got {type(options).__name__}")
        self.options = options
        if not isinstance(peers, Mapping):
            raise ConfigError(
                f"peers must be a mapping of node id to address, got {type(peers).__name__}"
            )
        self._addresses: dict[int, str] = {}
        for peer, address in peers.items():
            _check_node_id(peer, "a peer id")
            if peer == node_id:
                raise ConfigError(f"node {node_id} lists itself among its peers")
            self._addresses[peer] = normalize_address(address)
        self._closed = False
        self._sent = 0
        self._received = 0
        self._dropped: Counter[int] = Counter()
        self._waiting: set[asyncio.Task[Any]] = set()
        self._interrupted: set[asyncio.Task[Any]] = set()

    # -- what implementations provide ---------------------------------------------

    @property
    @abc.abstractmethod
    def endpoint(self) -> str:
        """The address this node is bound to (the real port when bound to port 0)."""

    @abc.abstractmethod
    async def _send(self, peer: int, frames: Sequence[Frame]) -> bool:
        """Queue ``frames`` for ``peer``, waiting for room; ``False`` if dropped at once."""

    @abc.abstractmethod
    async def _recv(self) -> Received:
        """Wait for the next incoming message."""

    @abc.abstractmethod
    async def _close(self) -> None:
        """Release sockets and queues (called once)."""

    def _connections_cut(self) -> int:
        """Incoming connections closed for holding too much (see :class:`TransportStats`)."""
        return 0

    # -- the interface -------------------------------------------------------------

    @property
    def peers(self) -> frozenset[int]:
        """The neighbours this transport can send to."""
        return frozenset(self._addresses)

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def stats(self) -> TransportStats:
        return TransportStats(
            sent=self._sent,
            dropped=sum(self._dropped.values()),
            received=self._received,
            dropped_by_peer=dict(self._dropped),
            connections_cut=self._connections_cut(),
        )

    async def send(self, peer: int, frames: Sequence[Frame]) -> bool:
        """Queue ``frames`` for ``peer``: ``True`` once queued, ``False`` if dropped.

        Waits at most ``options.send_timeout_s``. Raises :class:`UnknownPeerError` for
        a peer that is not a neighbour and :class:`TransportClosed` after ``close``.
        """
        self._check_open()
        if type(peer) is not int or peer not in self._addresses:
            raise UnknownPeerError(peer, self.peers)
        if not frames:
            raise ValueError("a message needs at least one frame")
        for i, frame in enumerate(frames):
            if not isinstance(frame, _FRAME_TYPES):
                raise ValueError(
                    f"frame {i} is a {type(frame).__name__}; frames are bytes, bytearray, "
                    "memoryview or zmq.Frame"
                )
        async with self._interruptible():
            try:
                async with timeout(self.options.send_timeout_s):
                    queued = await self._send(peer, frames)
            except TimeoutError:
                queued = False
        if queued:
            self._sent += 1
        else:
            self._dropped[peer] += 1
        return queued

    async def recv(self) -> Received:
        """The next message from any neighbour, fairly interleaved across neighbours."""
        self._check_open()
        async with self._interruptible():
            received = await self._recv()
        self._received += 1
        return received

    async def close(self) -> None:
        """Close sockets and end pending ``send``/``recv`` calls; idempotent.

        Messages already queued get up to ``options.close_linger_ms`` to go out.
        """
        if self._closed:
            return
        self._closed = True
        for task in self._waiting:
            self._interrupted.add(task)
            task.cancel()
        await self._close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- helpers ---------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise TransportClosed(f"transport of node {self.node_id} is closed")

    def _interruptible(self) -> _Interruptible:
        return _Interruptible(self)


class _Interruptible:
    """Turns the cancellation that ``close()`` sends a waiting task into TransportClosed.

    ``close`` cancels the tasks blocked in ``send``/``recv`` (so no wait outlives the
    transport, whatever the implementation waits on); this context then takes that
    one cancellation back with ``Task.uncancel`` (as ``asyncio.timeout`` does) and
    raises :class:`TransportClosed` instead. A cancellation from anyone else is
    left alone.
    """

    def __init__(self, transport: Transport) -> None:
        self._transport = transport
        self._task: asyncio.Task[Any] | None = None

    async def __aenter__(self) -> None:
        self._task = asyncio.current_task()
        if self._task is not None:
            self._transport._waiting.add(self._task)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        task = self._task
        if task is None:
            return
        t = self._transport
        t._waiting.discard(task)
        if task in t._interrupted:
            t._interrupted.discard(task)
            # Take back the cancellation close() sent; if nobody else cancelled
            # the task, the caller sees TransportClosed instead of CancelledError.
            if uncancel(task) == 0:
                raise TransportClosed(f"transport of node {t.node_id} was closed") from None
