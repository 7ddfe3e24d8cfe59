"""The ZeroMQ transport: one bound PULL for incoming messages, one PUSH per neighbour.

Sockets (see :mod:`p2pfl.transport.base` for the semantics they implement):

- PULL, bound at ``bind_address``: every neighbour's PUSH connects here. PULL
  fair-queues across connections, so a flooding neighbour cannot starve the
  others; each connection has its own RCVHWM queue. PULL has no routing ids (see
  *Why not ROUTER*), and it only accepts PUSH peers: ZMTP refuses any other
  socket type at the handshake.
- PUSH per neighbour, connected to the neighbour's address. Who sent a message
  (``Received.peer``) depends on whether the sockets are secured (see *Identity*).
  ``ZMQ_IMMEDIATE`` is on, so messages are queued only on a live connection: a send
  to a neighbour that is down waits (up to ``send_timeout_s``) for it to come up
  and is then dropped, instead of piling stale rounds into an unbounded backlog.

Every socket gets ``SNDHWM``/``RCVHWM`` = ``options.hwm``, ``MAXMSGSIZE`` =
``options.max_message_bytes`` (a peer sending a larger frame, handshake frames
included, is disconnected; a node derives it from its model with
:func:`p2pfl.transport.limits.inbound_frame_limit`), ``HANDSHAKE_IVL`` =
``options.handshake_ivl_ms``, ZMTP
heartbeats (``HEARTBEAT_IVL``/``TIMEOUT``/``TTL``) so a silent peer's connection is
closed and retried with back-off (``RECONNECT_IVL``/``RECONNECT_IVL_MAX``), and then
``options.configure_socket`` (the place for CurveZMQ keys), before
``bind``/``connect``.

Memory per incoming connection
    RCVHWM counts whole messages and MAXMSGSIZE single frames; neither bounds a
    message that never ends. A :class:`~p2pfl.transport.guard.ConnectionGuard`
    (every ``options.guard_interval_ms``, on Linux over TCP) closes an incoming
    connection that makes libzmq hold more than ``hwm + 2`` largest messages (64 KiB
    before a CurveZMQ peer is authenticated); ``stats.connections_cut`` counts them.

Sends are zero-copy (``copy=False``); ``zmq.asyncio`` first tries a non-blocking
send and otherwise waits for the socket to become writable, under the base
class's ``asyncio.timeout``. Received frames are ``zmq.Frame`` objects whose
memory belongs to that message alone (:func:`p2pfl.wire.decode` can view it) and
that carry their connection's metadata (``zmq_msg_gets``), which is where the
sender's identity is read. Each transport owns its ZeroMQ context (one I/O
thread). ``close`` destroys it with ``LINGER`` = ``options.close_linger_ms``
(messages already queued may go out for that long), closing every socket in
it: also those a hook opened there (CurveZMQ's ZAP handler must live in the
same context), so closing
the transport before or after stopping such a handler both work; stopping it
afterwards finds its socket already closed.

Identity
    *Secured* (the hook made the socket use CurveZMQ, ``MECHANISM == CURVE``):
    ``Received.peer`` is the ZAP ``User-Id`` of the connection (the node id
    :class:`p2pfl.security.NodeAuthenticator` gave the key that authenticated it;
    ``None`` if it is not a node id). Nothing the peer announces is used.

    *Insecure*: each PUSH declares its node id in the ZMTP handshake as the
    connection property ``X-P2PFL-Node: <node_id>`` (``ZMQ_METADATA``), and that
    claim is ``Received.peer`` (``None`` for a connection that declared none in
    p2pfl's form). Nothing can check it: any peer can claim any id, and the
    header's ``sender`` too, exactly as the routing id it replaces. Several
    connections may claim the same id; each is served, and a restarted node is
    heard at once on its new connection.

Why not ROUTER
    The previous design (ROUTER + one DEALER per neighbour) let a peer crash the
    receiving process: libzmq 4.3.5 aborts (``Assertion failed: ok
    (src/socket_base.cpp)``) when a peer announces a routing id of ZeroMQ's
    reserved form (a zero byte, then a 32-bit counter) that the ROUTER later
    assigns to another connection itself. Those ids are predictable (the counter
    starts at the C library's first ``rand()``) and no ROUTER option prevents it.
    PULL keeps no routing ids, so no announced identity can collide with anything.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, cast

import zmq
import zmq.asyncio

from p2pfl.transport.base import (
    Received,
    SocketRole,
    Transport,
    TransportError,
    TransportOptions,
    normalize_address,
)
from p2pfl.transport.guard import ConnectionGuard, GuardBudget, guard_supported
from p2pfl.wire import Frame

__all__ = ["NODE_PROPERTY", "ZmqTransport", "node_metadata", "peer_of_property"]

#: The ZMTP connection property an insecure PUSH declares its node id in.
NODE_PROPERTY = "X-P2PFL-Node"

_NODE_ID = re.compile(r"^(0|[1-9][0-9]{0,9})$")


def node_metadata(node_id: int) -> bytes:
    """The ``ZMQ_METADATA`` value a node's outgoing sockets set: ``b"X-P2PFL-Node:<id>"``."""
    return b"%s:%d" % (NODE_PROPERTY.encode("ascii"), node_id)


def peer_of_property(value: object) -> int | None:
    """The node id in a connection property's value (decimal), or ``None`` if not p2pfl's form."""
    if not isinstance(value, str):
        return None
    match = _NODE_ID.match(value)
    if match is None:
        return None
    node = int(match.group(1))
    return node if node < 2**31 else None


def _property(frame: zmq.Frame, name: str) -> str | None:
    """A connection property of a received frame, or ``None`` when absent or not text."""
    try:
        value = frame.get(name)
    # ZMQError: no such property; UnicodeDecodeError: a peer's bytes that are not UTF-8.
    except (zmq.ZMQError, UnicodeDecodeError):
        return None
    return value if isinstance(value, str) else None


class ZmqTransport(Transport):
    """Transport over ZeroMQ TCP (or IPC) sockets; binds on construction.

    ``ZmqTransport(node_id, bind_address, peers, options=TransportOptions())``;
    ``bind_address`` may use port 0 (``"127.0.0.1:0"``), then :attr:`endpoint`
    tells the port the OS chose. Raises :class:`~p2pfl.transport.base.TransportError`
    when the address cannot be bound, :class:`~p2pfl.errors.ConfigError` for a
    malformed address, id or option.
    """

    def __init__(
        self,
        node_id: int,
        bind_address: str,
        peers: Mapping[int, str],
        *,
        options: TransportOptions | None = None,
    ) -> None:
        super().__init__(node_id, peers, options if options is not None else TransportOptions())
        bind_endpoint = normalize_address(bind_address)
        self._ctx = zmq.asyncio.Context(io_threads=1)
        self._pushes: dict[int, zmq.asyncio.Socket] = {}
        self._guard: ConnectionGuard | None = None
        try:
            self._pull = self._socket(zmq.PULL, SocketRole.INCOMING, None)
            # Read after the hook ran: it is what makes the PULL a CurveZMQ server.
            self._authenticated = self._pull.getsockopt(zmq.MECHANISM) == zmq.CURVE
            self._identity_property = "User-Id" if self._authenticated else NODE_PROPERTY
            o = self.options
            if o.guard_interval_ms and bind_endpoint.startswith("tcp://") and guard_supported():
                # before bind: no accepted connection is missed
                budget = GuardBudget(
                    o.max_message_bytes, o.hwm, o.heartbeat_ivl_ms, curve=self._authenticated
                )
                self._guard = ConnectionGuard(self._pull, budget, o.guard_interval_ms / 1000)
            try:
                self._pull.bind(bind_endpoint)
            except zmq.ZMQError as exc:
                raise TransportError(f"cannot bind {bind_endpoint}: {exc}") from None
            self._endpoint = self._pull.getsockopt_string(zmq.LAST_ENDPOINT)
            for peer, address in sorted(self._addresses.items()):
                push = self._socket(zmq.PUSH, SocketRole.OUTGOING, peer)
                if push.getsockopt(zmq.MECHANISM) != zmq.CURVE:
                    # A CURVE server names us by our key's User-Id and ignores this.
                    push.setsockopt(zmq.METADATA, node_metadata(node_id))
                push.setsockopt(zmq.IMMEDIATE, 1)
                try:
                    push.connect(address)
                except zmq.ZMQError as exc:
                    raise TransportError(
                        f"cannot connect to peer {peer} at {address}: {exc}"
                    ) from None
                self._pushes[peer] = push
            if self._guard is not None:
                port = int(self._endpoint.rsplit(":", 1)[1])
                self._guard.start(port, name=f"p2pfl-guard-{node_id}")
        except BaseException:
            if self._guard is not None:
                self._guard.close()
            self._ctx.destroy(linger=0)
            raise

    def _socket(self, kind: int, role: SocketRole, peer: int | None) -> zmq.asyncio.Socket:
        sock = self._ctx.socket(kind)
        o = self.options
        for option, value in (
            (zmq.LINGER, 0),
            (zmq.SNDHWM, o.hwm),
            (zmq.RCVHWM, o.hwm),
            (zmq.MAXMSGSIZE, o.max_message_bytes),
            (zmq.HANDSHAKE_IVL, o.handshake_ivl_ms),
            (zmq.HEARTBEAT_IVL, o.heartbeat_ivl_ms),
            (zmq.HEARTBEAT_TIMEOUT, o.heartbeat_timeout_ms),
            (zmq.HEARTBEAT_TTL, o.heartbeat_timeout_ms),
            (zmq.RECONNECT_IVL, o.reconnect_ivl_ms),
            (zmq.RECONNECT_IVL_MAX, o.reconnect_ivl_max_ms),
        ):
            sock.setsockopt(option, value)
        if o.configure_socket is not None:
            o.configure_socket(sock, role, peer)
        return sock

    @property
    def endpoint(self) -> str:
        return self._endpoint

    async def _send(self, peer: int, frames: Sequence[Frame]) -> bool:
        try:
            await self._pushes[peer].send_multipart(frames, copy=False)
        except zmq.Again:  # writable event raced with a full queue: same as a timeout
            return False
        except zmq.ZMQError as exc:
            raise TransportError(f"send to peer {peer} failed: {exc}") from None
        return True

    async def _recv(self) -> Received:
        while True:
            try:
                parts = cast(list[Any], await self._pull.recv_multipart(copy=False))
                break
            except zmq.Again:
                # PULL can signal readable with nothing to read (seen on new CurveZMQ
                # connections, whose first pipe entry is not a message): wait again.
                continue
            except zmq.ZMQError as exc:
                raise TransportError(f"receive failed: {exc}") from None
        if self._guard is not None:
            self._guard.delivered(parts)
        # Every frame of a message carries its connection's properties; read the first.
        return Received(peer_of_property(_property(parts[0], self._identity_property)), parts)

    def _connections_cut(self) -> int:
        return 0 if self._guard is None else self._guard.cut

    async def _close(self) -> None:
        if self._guard is not None:
            self._guard.close()  # before the context: it reads the monitor's socket
        # destroy, not term: term would wait forever for sockets a hook opened in
        # this context (a ZAP handler) when the transport closes first. The linger
        # lets a message just handed to ZeroMQ (a goodbye) reach the wire: with 0 it
        # can be dropped in the I/O thread's queue, and the neighbour waits a deadline.
        # It blocks the loop at most that long, and only while a live peer is slow to
        # read: with IMMEDIATE, nothing is queued for a peer that is down.
        self._ctx.destroy(linger=self.options.close_linger_ms)
