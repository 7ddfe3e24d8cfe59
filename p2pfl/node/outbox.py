"""Outgoing messages: one bounded FIFO and one sending task per neighbour.

A send to a dead or slow neighbour waits up to the transport's send timeout;
with a task per neighbour, that wait never delays the round or the messages
to the other neighbours, and messages to one neighbour stay in order (the
transport guarantees order per pair, so a round's vector always precedes the
next round's and the final goodbye). When a neighbour's queue is full, the
oldest message is given up and counted: a stale round is worth less than a
fresh one.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable, Sequence
from types import TracebackType

from p2pfl._compat import Self
from p2pfl._compat import timeout as async_timeout
from p2pfl.transport import Transport, TransportClosed
from p2pfl.wire import Frame


class Outbox:
    """Queue frames per peer; ``async with`` starts and stops the sending tasks."""

    def __init__(self, transport: Transport, peers: Iterable[int], capacity: int = 4) -> None:
        if type(capacity) is not int or capacity < 1:
            raise ValueError(f"capacity must be a positive int, got {capacity!r}")
        self._transport = transport
        self._queues: dict[int, asyncio.Queue[Sequence[Frame]]] = {
            p: asyncio.Queue(maxsize=capacity) for p in sorted(set(peers))
        }
        self._tasks: list[asyncio.Task[None]] = []
        self.dropped = 0

    async def __aenter__(self) -> Self:
        self._tasks = [
            asyncio.create_task(self._pump(peer, q), name=f"outbox-{peer}")
            for peer, q in self._queues.items()
        ]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    def put(self, peer: int, frames: Sequence[Frame]) -> None:
        """Queue ``frames`` for ``peer`` without waiting (the oldest is dropped if full)."""
        q = self._queues[peer]
        if q.full():
            q.get_nowait()
            q.task_done()
            self.dropped += 1
        q.put_nowait(frames)

    async def drain(self, timeout: float) -> bool:
        """Wait until every queued message was handed to the transport; ``False`` on timeout."""
        try:
            async with async_timeout(timeout):
                for q in self._queues.values():
                    await q.join()
        except TimeoutError:
            return False
        return True

    async def _pump(self, peer: int, q: asyncio.Queue[Sequence[Frame]]) -> None:
        while True:
            frames = await q.get()
            try:
                await self._transport.send(peer, frames)  # a drop is counted by the transport
            except TransportClosed:
                return
            finally:
                q.task_done()
