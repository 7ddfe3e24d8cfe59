"""Outgoing messages: one bounded FIFO and one sending task per neighbour.

A send to a dead or slow neighbour waits up to the transport's send timeout;
with a task per neighbour, that wait never delays the round or the messages
to the other neighbours, and messages to one neighbour stay in order (the
transport guarantees order per pair, so a round's vector always precedes the
next round's, a heartbeat announcing a round, and the final goodbye).

Two kinds of message:

- :meth:`Outbox.put` (vectors, hellos, goodbyes): kept until handed to the
  transport. A send that times out (the neighbour's connection is down, or its
  queues are full because it is slow to read) is tried again for as long as
  ``keep_trying(peer)`` says the neighbour is worth it (alive): a slow neighbour
  must get every vector, or it waits for one that never comes. When a queue is
  full the oldest message is given up and counted: the neighbour is then rounds
  behind, and a stale round is worth less than a fresh one.
- :meth:`Outbox.offer` (heartbeats): queued only when nothing else waits for that
  neighbour, never retried. A busy queue already tells the neighbour we are alive.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable, Sequence
from types import TracebackType

from p2pfl._compat import Self
from p2pfl._compat import timeout as async_timeout
from p2pfl.transport import Transport, TransportClosed
from p2pfl.wire import Frame, encoded_nbytes

_Item = tuple[Sequence[Frame], bool, int]  # frames, retried until sent, bytes to count


def _always(peer: int) -> bool:
    return True


class Outbox:
    """Queue frames per peer; ``async with`` starts and stops the sending tasks."""

    def __init__(
        self,
        transport: Transport,
        peers: Iterable[int],
        capacity: int = 4,
        *,
        keep_trying: Callable[[int], bool] | None = None,
    ) -> None:
        if type(capacity) is not int or capacity < 1:
            raise ValueError(f"capacity must be a positive int, got {capacity!r}")
        self._transport = transport
        self._queues: dict[int, asyncio.Queue[_Item]] = {
            p: asyncio.Queue(maxsize=capacity) for p in sorted(set(peers))
        }
        self._keep_trying = keep_trying if keep_trying is not None else _always
        self._tasks: list[asyncio.Task[None]] = []
        self.dropped = 0
        self.retried = 0
        self.vector_bytes = 0  # bytes of counted messages the transport took

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

    def put(self, peer: int, frames: Sequence[Frame], *, counted: bool = False) -> None:
        """Queue ``frames`` for ``peer`` without waiting (the oldest is dropped if full).

        ``counted``: once the transport takes them, their bytes
        (:func:`p2pfl.wire.encoded_nbytes`) are added to :attr:`vector_bytes`.
        """
        q = self._queues[peer]
        if q.full():
            q.get_nowait()
            q.task_done()
            self.dropped += 1
        q.put_nowait((frames, True, encoded_nbytes(frames) if counted else 0))

    def offer(self, peer: int, frames: Sequence[Frame]) -> bool:
        """Queue ``frames`` only if nothing waits for ``peer``; sent at most once."""
        q = self._queues[peer]
        if not q.empty():
            return False
        q.put_nowait((frames, False, 0))
        return True

    async def drain(self, timeout: float) -> bool:
        """Wait until every queued message was handed to the transport; ``False`` on timeout."""
        try:
            async with async_timeout(timeout):
                for q in self._queues.values():
                    await q.join()
        except TimeoutError:
            return False
        return True

    async def _pump(self, peer: int, q: asyncio.Queue[_Item]) -> None:
        while True:
            frames, persistent, nbytes = await q.get()
            try:
                # a failed send is counted by the transport; retried while the peer is alive
                while not await self._transport.send(peer, frames):
                    if not persistent or not self._keep_trying(peer):
                        break
                    self.retried += 1
                else:
                    self.vector_bytes += nbytes
            except TransportClosed:
                return
            finally:
                q.task_done()
