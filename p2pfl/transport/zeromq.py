"""The ZeroMQ transport: one bound ROUTER for incoming messages, one DEALER per neighbour.

Sockets (see :mod:`p2pfl.transport.base` for the semantics they implement):

- ROUTER, bound at ``bind_address``: every neighbour's DEALER connects here. ROUTER
  prefixes each message with the connection's routing id and fair-queues across
  connections, so a flooding neighbour cannot starve the others; each connection
  has its own RCVHWM queue.
- DEALER per neighbour, connected to the neighbour's address. Who sent a message
  (``Received.peer``) depends on whether the sockets are secured (see *Identity*).
  ``ZMQ_IMMEDIATE`` is on, so messages are queued only on a live connection: a send
  to a neighbour that is down waits (up to ``send_timeout_s``) for it to come up
  and is then dropped, instead of piling stale rounds into an unbounded backlog.

Every socket gets ``LINGER=0`` (close never waits), ``SNDHWM``/``RCVHWM`` =
``options.hwm``, ``MAXMSGSIZE`` = ``options.max_message_bytes`` (a peer sending a
larger frame is disconnected), ZMTP heartbeats (``HEARTBEAT_IVL``/``TIMEOUT``/``TTL``)
so a silent peer's connection is closed and retried with back-off
(``RECONNECT_IVL``/``RECONNECT_IVL_MAX``), and then ``options.configure_socket`` (the
place for CurveZMQ keys), before ``bind``/``connect``.

Sends are zero-copy (``copy=False``); ``zmq.asyncio`` first tries a non-blocking
send and otherwise waits for the socket to become writable, under the base
class's ``asyncio.timeout``. Received frames are ``zmq.Frame`` objects whose
memory belongs to that message alone (:func:`p2pfl.wire.decode` can view it).
Each transport owns its ZeroMQ context (one I/O thread). ``close`` destroys it,
closing every socket in it: also those a hook opened there (CurveZMQ's ZAP handler
must live in the same context), so closing the transport before or after stopping
such a handler both work; stopping it afterwards finds its socket already closed.

Identity
    *Secured* (the hook made the socket use CurveZMQ, ``MECHANISM == CURVE``):
    DEALERs announce no routing id, the ROUTER assigns each connection its own,
    and ``Received.peer`` is the ZAP ``User-Id`` of the connection (the node id
    :class:`p2pfl.security.NodeAuthenticator` gave the key that authenticated it;
    ``None`` if it is not a node id). A routing id a peer announces is then used for
    nothing: a listed neighbour that connects first announcing ``n<j>`` can neither
    keep node ``j``'s connection out nor be taken for ``j``.

    *Insecure*: DEALERs announce ``b"n<node_id>"`` and that claim is
    ``Received.peer`` (nothing can check it: any peer can claim any id, and the
    header's ``sender`` too). The ROUTER sets ``ROUTER_HANDOVER``: a new connection
    announcing an id in use takes it over, so a squatter cannot keep the real node
    out (its reconnection takes the id back), and a restarted node is heard at once
    instead of after the heartbeat timeout of its dead connection.

    Known libzmq limit (4.3.5, both modes): a peer that announces a routing id of
    ZeroMQ's reserved form (a zero byte, then the 32-bit counter libzmq uses for
    the ids it assigns) that a later connection is then assigned aborts the
    receiving process (``Assertion failed: ok (src/socket_base.cpp)``). Only a peer
    that completes the handshake (secured: a listed neighbour) can try. Only
    another socket type for incoming messages (PULL: no routing ids) removes it.
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
from p2pfl.wire import Frame

__all__ = ["ZmqTransport", "peer_of_routing_id", "routing_id"]

_ROUTING_ID = re.compile(rb"^n(0|[1-9][0-9]{0,9})$")


def routing_id(node_id: int) -> bytes:
    """The ZeroMQ routing id a node's outgoing sockets announce: ``b"n<node_id>"``."""
    return b"n%d" % node_id


def peer_of_routing_id(rid: bytes) -> int | None:
    """The node id in a routing id, or ``None`` if it is not p2pfl's form."""
    match = _ROUTING_ID.match(rid)
    if match is None:
        return None
    value = int(match.group(1))
    return value if value < 2**31 else None


def _peer_of_user_id(frame: zmq.Frame) -> int | None:
    """The node id in a frame's ZAP ``User-Id`` (decimal, as NodeAuthenticator writes it)."""
    try:
        user_id = frame.get("User-Id")
    except zmq.ZMQError:  # no such property: not an authenticated connection
        return None
    if not isinstance(user_id, str) or not (user_id.isascii() and user_id.isdigit()):
        return None
    value = int(user_id)
    return value if value < 2**31 else None


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
        self._dealers: dict[int, zmq.asyncio.Socket] = {}
        try:
            self._router = self._socket(zmq.ROUTER, SocketRole.INCOMING, None)
            # Read after the hook ran: it is what makes the ROUTER a CurveZMQ server.
            self._authenticated = self._router.getsockopt(zmq.MECHANISM) == zmq.CURVE
            if not self._authenticated:
                self._router.setsockopt(zmq.ROUTER_HANDOVER, 1)
            try:
                self._router.bind(bind_endpoint)
            except zmq.ZMQError as exc:
                raise TransportError(f"cannot bind {bind_endpoint}: {exc}") from None
            self._endpoint = self._router.getsockopt_string(zmq.LAST_ENDPOINT)
            for peer, address in sorted(self._addresses.items()):
                dealer = self._socket(zmq.DEALER, SocketRole.OUTGOING, peer)
                if dealer.getsockopt(zmq.MECHANISM) != zmq.CURVE:
                    # A CURVE server names us by our key's User-Id: announcing an id would
                    # only let a squatter that announced it first keep this connection out.
                    dealer.setsockopt(zmq.ROUTING_ID, routing_id(node_id))
                dealer.setsockopt(zmq.IMMEDIATE, 1)
                try:
                    dealer.connect(address)
                except zmq.ZMQError as exc:
                    raise TransportError(
                        f"cannot connect to peer {peer} at {address}: {exc}"
                    ) from None
                self._dealers[peer] = dealer
        except BaseException:
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
            await self._dealers[peer].send_multipart(frames, copy=False)
        except zmq.Again:  # writable event raced with a full queue: same as a timeout
            return False
        except zmq.ZMQError as exc:
            raise TransportError(f"send to peer {peer} failed: {exc}") from None
        return True

    async def _recv(self) -> Received:
        try:
            parts = cast(list[Any], await self._router.recv_multipart(copy=False))
        except zmq.ZMQError as exc:
            raise TransportError(f"receive failed: {exc}") from None
        if self._authenticated:
            return Received(_peer_of_user_id(parts[1]), parts[1:])
        return Received(peer_of_routing_id(parts[0].bytes), parts[1:])

    async def _close(self) -> None:
        # destroy, not term: term would wait forever for sockets a hook opened in
        # this context (a ZAP handler) when the transport closes first.
        self._ctx.destroy(linger=0)
