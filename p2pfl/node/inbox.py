"""Per-round buffering of received parameter vectors.

A node in round ``r`` keeps the vectors its neighbours sent for rounds
``r .. r + rounds_ahead``: a neighbour that finished round ``r`` first may already
send ``r + 1``. Anything for an earlier round arrives too late to be aggregated
and is dropped; anything further ahead, or a second vector from the same sender
for the same round, is dropped too. Every drop is counted by kind, and memory is
bounded by ``(rounds_ahead + 1) * len(peers)`` vectors. Vectors of a round that
was left without being used (:meth:`RoundInbox.take`) are counted as ``unused``.
Whom to wait for, and how long, is the node's business (:mod:`p2pfl.node.node`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

import torch

Outcome = Literal["accepted", "stale", "ahead", "duplicate", "unknown_peer"]


class RoundInbox:
    """Vectors by round and sender, for the current round and ``rounds_ahead`` after it.

    Not thread-safe: one event loop puts and takes.
    """

    def __init__(self, peers: Iterable[int], rounds_ahead: int = 2) -> None:
        if type(rounds_ahead) is not int or rounds_ahead < 0:
            raise ValueError(f"rounds_ahead must be a non-negative int, got {rounds_ahead!r}")
        self.peers = frozenset(peers)
        self.rounds_ahead = rounds_ahead
        self._round = 0
        self._buffers: dict[int, dict[int, torch.Tensor]] = {}
        self._taken: set[int] = set()  # senders whose current-round vector was used
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

    def put(self, sender: int, round_: int, vector: torch.Tensor) -> Outcome:
        """Buffer ``vector``; the outcome says whether it was kept or why it was dropped."""
        outcome = self._classify(sender, round_)
        if outcome != "accepted":
            self.dropped[outcome] += 1
            return outcome
        self._buffers.setdefault(round_, {})[sender] = vector
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

    def received(self) -> dict[int, torch.Tensor]:
        """The current round's vectors so far, by sender."""
        return dict(self._buffers.get(self._round, {}))

    def take(self, senders: Iterable[int]) -> None:
        """Mark the current round's vectors of ``senders`` as used (not counted as unused)."""
        self._taken.update(senders)
