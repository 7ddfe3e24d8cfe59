"""An in-process transport with the ZeroMQ transport's semantics, for tests.

A test creates a :class:`MemoryNetwork` and one :class:`MemoryTransport` per node on
it; there is no process-wide state, and one network belongs to one event loop::

    net = MemoryNetwork()
    a = MemoryTransport(net, 0, "127.0.0.1:0", {})            # port 0: net picks one
    b = MemoryTransport(net, 1, "127.0.0.1:0", {0: a.endpoint})

Behaviour mirrors :class:`~p2pfl.transport.zeromq.ZmqTransport` (the shared contract
test checks both):

- every message is copied into private ``bytearray`` frames when sent, as the wire
  would, so the receiver may view (and modify) them and the sender may reuse its
  tensor;
- at most ``2 * hwm`` undelivered messages per (sender, receiver) pair (ZeroMQ's
  SNDHWM + RCVHWM); ``send`` waits up to ``send_timeout_s`` for room, or for the
  receiver's address to be bound (a closed or never-started node), then drops;
- the receiver takes messages round-robin across senders (ROUTER fair queuing);
- a message with a frame over the receiver's ``max_message_bytes`` vanishes.
"""

from __future__ import annotations

import asyncio
import re
from collections import deque
from collections.abc import Mapping, Sequence

from p2pfl.transport.base import (
    Received,
    Transport,
    TransportClosed,
    TransportError,
    TransportOptions,
    normalize_address,
)
from p2pfl.wire import Frame

__all__ = ["MemoryNetwork", "MemoryTransport"]

_PORT_ZERO = re.compile(r"^(tcp://.+):0$")


class _Inbox:
    """One node's incoming queues: bounded per sender, read round-robin."""

    def __init__(self, capacity: int, max_frame_bytes: int) -> None:
        self.capacity = capacity
        self.max_frame_bytes = max_frame_bytes
        self._queues: dict[int, deque[list[Frame]]] = {}
        self._turn: deque[int] = deque()  # senders with queued messages, in serving order
        self._changed = asyncio.Condition()
        self.closed = False

    async def put(self, sender: int, frames: list[Frame]) -> bool:
        """Wait for room and queue; ``False`` if the inbox closed meanwhile."""
        async with self._changed:
            await self._changed.wait_for(
                lambda: self.closed or len(self._queues.get(sender, ())) < self.capacity
            )
            if self.closed:
                return False
            queue = self._queues.setdefault(sender, deque())
            if not queue:
                self._turn.append(sender)
            queue.append(frames)
            self._changed.notify_all()
            return True

    async def get(self) -> tuple[int, list[Frame]]:
        async with self._changed:
            await self._changed.wait_for(lambda: self.closed or bool(self._turn))
            if self.closed:
                raise TransportClosed("inbox closed")
            sender = self._turn.popleft()
            queue = self._queues[sender]
            frames = queue.popleft()
            if queue:
                self._turn.append(sender)
            self._changed.notify_all()
            return sender, frames

    async def close(self) -> None:
        async with self._changed:
            self.closed = True
            self._changed.notify_all()


class _Address:
    """An address on the network: the inbox bound there, if any, and an event for waiters."""

    def __init__(self) -> None:
        self.inbox: _Inbox | None = None
        self.bound = asyncio.Event()


class MemoryNetwork:
    """The medium :class:`MemoryTransport` objects talk through; make one per test."""

    def __init__(self, first_port: int = 49152) -> None:
        self._addresses: dict[str, _Address] = {}
        self._next_port = first_port

    @property
    def bound(self) -> frozenset[str]:
        """Addresses that currently have a live transport."""
        return frozenset(a for a, slot in self._addresses.items() if slot.inbox is not None)

    def _slot(self, endpoint: str) -> _Address:
        return self._addresses.setdefault(endpoint, _Address())

    def _bind(self, endpoint: str, inbox: _Inbox) -> str:
        match = _PORT_ZERO.match(endpoint)
        if match is not None:
            while f"{match.group(1)}:{self._next_port}" in self.bound:
                self._next_port += 1
            endpoint = f"{match.group(1)}:{self._next_port}"
            self._next_port += 1
        slot = self._slot(endpoint)
        if slot.inbox is not None:
            raise TransportError(f"cannot bind {endpoint}: address already in use")
        slot.inbox = inbox
        slot.bound.set()
        return endpoint

    def _unbind(self, endpoint: str) -> None:
        slot = self._addresses[endpoint]
        slot.inbox = None
        slot.bound = asyncio.Event()

    async def _inbox(self, endpoint: str) -> _Inbox:
        """The inbox bound at ``endpoint``, waiting for one if none is."""
        while True:
            slot = self._slot(endpoint)
            if slot.inbox is not None:
                return slot.inbox
            await slot.bound.wait()


class MemoryTransport(Transport):
    """A transport on a :class:`MemoryNetwork`; binds on construction."""

    def __init__(
        self,
        network: MemoryNetwork,
        node_id: int,
        bind_address: str,
        peers: Mapping[int, str],
        *,
        options: TransportOptions | None = None,
    ) -> None:
        super().__init__(node_id, peers, options if options is not None else TransportOptions())
        if not isinstance(network, MemoryNetwork):
            raise TypeError(f"network must be a MemoryNetwork, got {type(network).__name__}")
        self._network = network
        self._inbox = _Inbox(2 * self.options.hwm, self.options.max_message_bytes)
        self._endpoint = network._bind(normalize_address(bind_address), self._inbox)

    @property
    def endpoint(self) -> str:
        return self._endpoint

    async def _send(self, peer: int, frames: Sequence[Frame]) -> bool:
        copies: list[Frame] = [bytearray(_view(f)) for f in frames]  # what the wire would do
        address = self._addresses[peer]
        while True:
            inbox = await self._network._inbox(address)
            if any(len(f) > inbox.max_frame_bytes for f in copies):
                return True  # ZeroMQ: queued, then the receiver drops it and disconnects us
            if await inbox.put(self.node_id, copies):
                return True
            # the receiver closed while we waited for room: wait for it to come back

    async def _recv(self) -> Received:
        sender, frames = await self._inbox.get()
        return Received(sender, frames)

    async def _close(self) -> None:
        self._network._unbind(self._endpoint)
        await self._inbox.close()


def _view(frame: Frame) -> memoryview:
    if isinstance(frame, bytes | bytearray | memoryview):
        return memoryview(frame)
    return frame.buffer  # zmq.Frame
