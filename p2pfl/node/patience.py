"""How long a round waits for a live neighbour: a deadline that follows observed arrival times.

A round's vectors do not arrive at once: a neighbour on a slower or busier machine
trains more slowly, and waits for its own neighbours. A fixed deadline is either
too short for a loaded machine (slow neighbours are cut, and the run no longer
computes what the simulator computes) or needlessly long for a silent Byzantine
neighbour. :class:`Patience` measures each round's *lateness* of the neighbours'
vectors (seconds between the moment the vector could first be expected, see
:mod:`p2pfl.node.node`, and its arrival), keeps a robust high value ``L`` of
recent rounds, and waits

    P = min(cap, max(floor, factor * L))

for a live neighbour that has not delivered: ``floor`` is ``network.round_timeout``,
``factor`` is ``network.patience_factor`` (5: a neighbour five times later than the
latest seen recently is not merely slow), ``cap`` a bound for pathological cases.

Robust to Byzantine neighbours: per round, the ``f`` largest latenesses are
dropped (up to ``f`` Byzantine neighbours may delay their vectors on purpose to
inflate the deadline), and ``L`` is the largest of what is left over the last
``window`` rounds.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence


class Patience:
    """The adaptive wait ``P`` of the module docstring."""

    def __init__(self, floor: float, factor: float, cap: float, window: int = 20) -> None:
        if not 0 < floor <= cap:
            raise ValueError(f"need 0 < floor <= cap, got floor={floor!r}, cap={cap!r}")
        if not factor >= 1:
            raise ValueError(f"factor must be >= 1, got {factor!r}")
        if type(window) is not int or window < 1:
            raise ValueError(f"window must be a positive int, got {window!r}")
        self.floor = float(floor)
        self.factor = float(factor)
        self.cap = float(cap)
        self._recent: deque[float] = deque(maxlen=window)

    @property
    def seconds(self) -> float:
        """The current wait ``P``."""
        late = max(self._recent, default=0.0)
        return min(self.cap, max(self.floor, self.factor * late))

    @property
    def recent_lateness(self) -> float:
        """``L``: the robust recent lateness ``P`` is derived from."""
        return max(self._recent, default=0.0)

    def record(self, lateness: Sequence[float], f: int) -> None:
        """One round's latenesses (vectors that arrived in time); the ``f`` largest are dropped."""
        kept = sorted(max(0.0, x) for x in lateness)
        kept = kept[: max(0, len(kept) - f)]
        if kept:
            self._recent.append(kept[-1])
