"""Telling a dead neighbour from a slow one: heartbeat arrival times, per neighbour.

Every node sends each neighbour an :class:`~p2pfl.wire.Alive` heartbeat every
``network.heartbeat_interval`` seconds (and every message it sends proves it alive
too). :class:`Liveness` records when each neighbour was last heard from and the
recent gaps between its messages, and declares a neighbour *dead* once it has been
silent for longer than

    timeout = max(dead_after, mean(gaps) + z * std(gaps))

over the last ``window`` gaps: the floor ``network.dead_after`` for a neighbour
heard regularly, more for one whose messages come irregularly (a loaded machine).
This is the phi-accrual idea (Hayashibara et al., SRDS 2004; Akka's
``acceptable-heartbeat-pause`` is the floor) in its normal-distribution form:
``phi = -log10(1 - F(silence))`` above a threshold is, for a normal ``F``, a
silence beyond ``mean + z * std`` (z = 6 is phi of about 9).

A node that was itself stalled (its event loop did not run: its process was
descheduled, swapped or stopped) must not blame its neighbours for the silence it
could not hear through. Lifeguard (Dadgar et al., 2017) makes a node that sees
itself slow wait longer before accusing others; here a check that runs ``late``
seconds after it was due first moves every neighbour's last-heard time forward by
``late`` (:meth:`Liveness.forgive`), so only silence the node was awake for counts.

A neighbour never heard from is never declared dead here (it may not have started
yet); the node's handshake decides about it. Any message from a dead neighbour
brings it back (:meth:`Liveness.heard` says so).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable


class Liveness:
    """Last-heard times and gap statistics of a fixed set of neighbours.

    Times are the event loop's clock (``loop.time()``), passed in, so the class is
    pure and testable without waiting.
    """

    def __init__(
        self,
        peers: Iterable[int],
        *,
        dead_after: float,
        z: float = 6.0,
        window: int = 32,
    ) -> None:
        if not (isinstance(dead_after, int | float) and math.isfinite(dead_after)) or (
            dead_after <= 0
        ):
            raise ValueError(f"dead_after must be a positive number of seconds, got {dead_after!r}")
        if type(window) is not int or window < 2:
            raise ValueError(f"window must be an int >= 2, got {window!r}")
        self.dead_after = float(dead_after)
        self.z = float(z)
        self._last: dict[int, float] = {}
        self._gaps: dict[int, deque[float]] = {p: deque(maxlen=window) for p in peers}
        self.dead: set[int] = set()

    @property
    def peers(self) -> frozenset[int]:
        return frozenset(self._gaps)

    def heard(self, peer: int, now: float) -> bool:
        """Record a message from ``peer``; ``True`` if it was dead and is back."""
        if peer not in self._gaps:
            return False
        last = self._last.get(peer)
        if last is not None and now > last and peer not in self.dead:
            self._gaps[peer].append(now - last)
        self._last[peer] = now
        if peer in self.dead:
            self.dead.discard(peer)
            return True
        return False

    def ever_heard(self, peer: int) -> bool:
        return peer in self._last

    def timeout(self, peer: int) -> float:
        """How long ``peer`` may be silent before it is dead (see the module docstring)."""
        gaps = self._gaps[peer]
        if len(gaps) < 4:
            return self.dead_after
        mean = sum(gaps) / len(gaps)
        std = math.sqrt(sum((g - mean) ** 2 for g in gaps) / (len(gaps) - 1))
        return max(self.dead_after, mean + self.z * std)

    def silence(self, peer: int, now: float) -> float:
        """Seconds since ``peer`` was last heard from (``0`` if never)."""
        last = self._last.get(peer)
        return 0.0 if last is None else max(0.0, now - last)

    def forgive(self, seconds: float) -> None:
        """This node was stalled ``seconds``: that silence is not its neighbours' fault."""
        if seconds > 0:
            for peer in self._last:
                self._last[peer] += seconds

    def check(self, now: float) -> list[int]:
        """Neighbours that just became dead (silent past their timeout), in id order."""
        newly = [
            p
            for p in sorted(self._last)
            if p not in self.dead and now - self._last[p] > self.timeout(p)
        ]
        self.dead.update(newly)
        return newly

    def declare_dead(self, peer: int) -> None:
        """``peer`` left (said bye) or was refused: dead until it is heard from again."""
        if peer in self._gaps:
            self.dead.add(peer)
