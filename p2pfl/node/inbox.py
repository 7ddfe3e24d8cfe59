"""Per-round buffering of received parameter vectors.

A node in round ``r`` keeps the vectors its neighbours sent for rounds
``r .. r + rounds_ahead``: a neighbour that finished round ``r`` first may already
send ``r + 1``. Anything for an earlier round arrives too late to be aggregated
and is dropped; anything further ahead, or a second vector from the same sender
for the same round, is dropped too. Every drop is counted by kind, and memory is
bounded by ``(rounds_ahead + 1) * len(peers)`` vectors.

:meth:`RoundInbox.collect` waits (on an event, never by polling) until every
expected sender's vector for the current round is in, or the deadline passes,
and returns what arrived (optionally waiting only for some of the expected
senders, see ``wait_for``, and for at least a number of them, see
``at_least``). A peer that said goodbye (:meth:`RoundInbox.depart`) is no
longer waited for.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Iterable
from typing import Literal

import torch

from p2pfl._compat import timeout_at

Outcome = Literal["accepted", "stale", "ahead", "duplicate", "unknown_peer"]


class RoundInbox:
    """Vectors by round and sender, for the current round and ``rounds_ahead`` after it.

    Not thread-safe: one event loop puts and collects.
    """

    def __init__(self, peers: Iterable[int], rounds_ahead: int = 2) -> None:
        if type(rounds_ahead) is not int or rounds_ahead < 0:
            raise ValueError(f"rounds_ahead must be a non-negative int, got {rounds_ahead!r}")
        self.peers = frozenset(peers)
        self.rounds_ahead = rounds_ahead
        self._round = 0
        self._buffers: dict[int, dict[int, torch.Tensor]] = {}
        self._departed: set[int] = set()
        self._taken: set[int] = set()  # senders whose current-round vector collect() returned
        self._changed = asyncio.Event()
        self.dropped: dict[Outcome, int] = {
            "stale": 0,
            "ahead": 0,
            "duplicate": 0,
            "unknown_peer": 0,
        }
        self.unused = 0  # vectors buffered for a round that was left without collecting them

    @property
    def round(self) -> int:
        return self._round

    @property
    def departed(self) -> frozenset[int]:
        return frozenset(self._departed)

    def buffered(self) -> int:
        """Vectors held right now (all rounds)."""
        return sum(len(b) for b in self._buffers.values())

    def advance(self, round_: int) -> None:
        """Make ``round_`` current; buffers of earlier rounds are discarded."""
        if round_ < self._round:
            raise ValueError(f"cannot go back from round {self._round} to round {round_}")
        for r in [r for r in self._buffers if r < round_]:
            left = self._buffers.pop(r)
            self.unused += len(left) - (len(self._taken & set(left)) if r == self._round else 0)
        self._round = round_
        self._taken = set()
        self._changed.set()

    def put(self, sender: int, round_: int, vector: torch.Tensor) -> Outcome:
        """Buffer ``vector``; the outcome says whether it was kept or why it was dropped."""
        outcome = self._classify(sender, round_)
        if outcome != "accepted":
            self.dropped[outcome] += 1
            return outcome
        self._buffers.setdefault(round_, {})[sender] = vector
        if round_ == self._round:
            self._changed.set()
        return outcome

    def _classify(self, sender: int, round_: int) -> Outcome:
        if sender not in self.peers:
            return "unknown_peer"
        if round_ < self._round:
            return "stale"
        if round_ > self._round + self.rounds_ahead:
            return "ahead"
        if sender in self._buffers.get(round_, {}):
            return "duplicate"
        return "accepted"

    def depart(self, peer: int) -> None:
        """``peer`` left (said bye): stop waiting for it."""
        if peer in self.peers:
            self._departed.add(peer)
            self._changed.set()

    def rejoin(self, peer: int) -> None:
        """``peer`` is back (said hello again): wait for it again."""
        self._departed.discard(peer)

    def received(self) -> dict[int, torch.Tensor]:
        """The current round's vectors so far, by sender."""
        return dict(self._buffers.get(self._round, {}))

    def _complete(self, expected: Collection[int], needed: Collection[int], at_least: int) -> bool:
        got = self._buffers.get(self._round, {})
        if not all(p in got or p in self._departed for p in needed):
            return False
        return sum(p in got or p in self._departed for p in expected) >= at_least

    async def collect(
        self,
        expected: Collection[int],
        deadline: float,
        wait_for: Collection[int] | None = None,
        at_least: int = 0,
    ) -> dict[int, torch.Tensor]:
        """Wait until every sender in ``wait_for`` delivered this round (or left), or ``deadline``.

        ``deadline`` is on the event loop's clock (``loop.time()``); ``wait_for``
        defaults to ``expected``. With ``at_least = k``, it also waits until ``k``
        senders of ``expected`` delivered (or left). Returns the vectors of
        ``expected`` senders that arrived by then, by sender id.
        """
        needed = expected if wait_for is None else wait_for
        try:
            async with timeout_at(deadline):
                while not self._complete(expected, needed, at_least):
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            pass
        got = self._buffers.get(self._round, {})
        out = {p: got[p] for p in sorted(expected) if p in got}
        self._taken.update(out)
        return out
