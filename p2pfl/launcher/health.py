"""What a person must see when a run degrades: live warning lines and per-node counts.

Nodes emit ``warning`` events (``{"event": "warning", "node", "kind", "round",
"message", ...}``: a round waited out a deadline, a neighbour was suspected or
declared dead, a node kept its own vector, skipped rounds, refused a peer or
diverged). :class:`WarningPrinter` prints their ``message`` as they come, one line
each, but at most ``per_kind`` lines per node and kind and ``total`` lines in all,
so a misbehaving run cannot flood the terminal; every warning is counted anyway,
by the node, in its ``end`` event. :func:`node_health` turns those end counters
into the ``"node_health"`` key of ``summary.json`` (``launch`` and ``report``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

#: The round counters of ``node_health``, as the node's end event names them.
ROUND_COUNTERS = ("rounds_trained", "rounds_skipped", "rounds_kept_own", "rounds_waited_out")
#: Those that say something went wrong (``rounds_trained`` is the good one).
PROBLEM_COUNTERS = ROUND_COUNTERS[1:]
MAX_MESSAGE_CHARS = 300
HEALTH_KEY = "node_health"


def one_line(text: object, limit: int = MAX_MESSAGE_CHARS) -> str:
    """``text`` on one line (whitespace and control characters collapsed), cut at ``limit``."""
    flat = " ".join("".join(c if c.isprintable() else " " for c in str(text)).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


class WarningPrinter:
    """``printer(node, event)``: print the ``warning`` events among a fleet's events.

    ``write(line)`` prints one line (``p2pfl launch``: stderr, flushed). Line
    ``per_kind + 1`` of a node and kind says that further ones are only counted;
    line ``total + 1`` in all says the same for everything after it.
    """

    def __init__(
        self,
        write: Callable[[str], None],
        *,
        per_kind: int = 3,
        total: int = 40,
        prefix: str = "p2pfl launch: ",
    ) -> None:
        if per_kind < 1 or total < 1:
            raise ValueError(f"per_kind and total must be >= 1, got {per_kind}, {total}")
        self.write = write
        self.per_kind = per_kind
        self.total = total
        self.prefix = prefix
        self.counts: Counter[tuple[int, str]] = Counter()
        self.lines = 0
        self._silenced = False

    @property
    def warnings(self) -> int:
        """Warning events seen so far, shown or not."""
        return sum(self.counts.values())

    def __call__(self, node: int, event: Mapping[str, Any]) -> None:
        if event.get("event") != "warning":
            return
        kind = one_line(event.get("kind", "unknown"), 40)
        self.counts[node, kind] += 1
        if self._silenced:
            return
        if self.lines >= self.total:
            self._silenced = True
            self._say(
                "more warnings than shown: every one is counted in summary.json (node_health)"
            )
            return
        seen = self.counts[node, kind]
        if seen <= self.per_kind:
            message = event.get("message") or f"node {node}: {kind} in round {event.get('round')}"
            self._say(f"warning: {one_line(message)}")
        elif seen == self.per_kind + 1:
            self._say(
                f"node {node}: further {kind} warnings are not shown; "
                "summary.json counts them (node_health)"
            )

    def _say(self, text: str) -> None:
        self.lines += 1
        self.write(self.prefix + text)


def as_count(value: Any) -> int:
    """``value`` as an int count; 0 when it is not one (an older or damaged summary)."""
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def node_health(node_counters: Mapping[str, Any]) -> dict[str, Any]:
    """Per node, from its end event's counters: the ``"node_health"`` key of ``summary.json``.

    ``{node: {"rounds_trained", "rounds_skipped", "rounds_kept_own",
    "rounds_waited_out", "warnings": {kind: n}}}``; counters a node did not report
    (an older node) read as 0, and a node without counters (killed) is omitted.
    """
    out: dict[str, Any] = {}
    for node, counters in sorted(node_counters.items(), key=lambda kv: int(kv[0])):
        if not isinstance(counters, Mapping):
            continue
        entry: dict[str, Any] = {key: as_count(counters.get(key, 0)) for key in ROUND_COUNTERS}
        warnings = counters.get("warnings", {})
        entry["warnings"] = (
            {str(k): as_count(v) for k, v in sorted(warnings.items()) if as_count(v)}
            if isinstance(warnings, Mapping)
            else {}
        )
        out[str(node)] = entry
    return out


def unhealthy(health: Mapping[str, Any]) -> dict[str, Any]:
    """The nodes of a ``node_health`` with any warning or any problem round."""
    return {
        node: h
        for node, h in health.items()
        if h.get("warnings") or any(h.get(key) for key in PROBLEM_COUNTERS)
    }
