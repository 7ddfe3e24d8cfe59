"""A node's counters and its JSON-lines event log.

Each node process writes ``node-<id>.jsonl``: one JSON object per line, each with
``event``, ``node`` and ``time`` (Unix seconds) plus event fields:

===========  =================================================================
``start``    ``neighbours``, ``role``, ``parameters``, ``fingerprint``
``hello``    handshake done: ``heard`` (neighbour ids), ``missing`` (declared dead),
             ``refused`` (announced another model), ``seconds``
``round``    ``round``, ``seconds`` (whole round), ``wait_seconds`` (collecting),
             ``patience`` (the round's wait for a live neighbour, s),
             ``received`` (sender ids aggregated), ``missing``, ``suspected``,
             ``dead``, ``waited_out`` (a deadline passed with a neighbour missing),
             ``kept_own``
``warning``  something a person should see (printed by ``p2pfl node`` and
             ``p2pfl launch``): ``kind`` (:data:`WARNING_KINDS`), ``round``,
             ``peers``, ``message`` (a sentence)
``eval``     a metrics record: ``round``, ``byzantine``, ``accuracy``,
             ``test_loss``, ``train_loss`` (same keys as ``metrics.jsonl``);
             ``local_accuracy`` and, in the last round, ``personalized_accuracy``
             when ``[evaluation]`` asks for them
``end``      ``status`` (``done`` / ``stopped`` / ``failed``) and the
             counters of :meth:`NodeCounters.as_dict`, among them ``rejections``:
            messages accepted and refused, per peer and per reason
            (:meth:`p2pfl.validation.RejectionCounters.as_dict`), next to the
            inbox's (``inbox_dropped``) and outbox's (``outbox_dropped``,
            ``sends_dropped``) drops; ``p2pfl launch`` / ``report`` sum them per
            node under ``"rejections"`` in ``summary.json``
===========  =================================================================

Every line is flushed when written, so the log of a killed node is complete up
to its last event; :func:`read_node_log` skips a torn last line.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from p2pfl.errors import ConfigError
from p2pfl.validation import RejectionCounters

#: What a ``warning`` event can be about.
WARNING_KINDS = (
    "waited_out",  # a round's deadline passed with a live neighbour's vector missing
    "suspected",  # a live neighbour missed a deadline: slow or silent, no longer waited for
    "dead",  # a neighbour left (bye), or fell silent past its liveness timeout
    "kept_own",  # too few inputs for the rule: the node kept its own vector
    "skipped_rounds",  # a catch-up round jumped over rounds
    "refused_peer",  # a neighbour announced another model and is refused
    "diverged",  # the node's own parameters diverged (non-finite or exploding)
    "knowledge",  # an attacker sees too little to act differently from an honest node
)


@dataclass
class NodeCounters:
    """What the node did and what went wrong, and how often, during its run.

    ``last_round`` is the last round the node reached; ``rounds_completed`` the
    rounds it actually ran (trained, or adopted in a catch-up round), never the
    rounds it skipped (``rounds_skipped``), so ``rounds_completed +
    rounds_skipped == last_round``.
    """

    last_round: int = 0
    rounds_completed: int = 0
    rounds_trained: int = 0
    rounds_skipped: int = 0
    rounds_incomplete: int = 0  # some expected neighbour's vector missing
    rounds_kept_own: int = 0  # fewer inputs than the rule needs: kept the own vector
    rounds_waited_out: int = 0  # a deadline passed with a live neighbour's vector missing
    warnings: dict[str, int] = field(default_factory=dict)  # by WARNING_KINDS
    diverged_round: int | None = None  # the round its own vector first diverged
    inbox_dropped: dict[str, int] = field(default_factory=dict)  # by RoundInbox outcome
    inbox_unused: int = 0
    outbox_dropped: int = 0  # oldest queued message given up for a slow or dead peer
    sends_dropped: int = 0  # transport send timeouts
    bytes_sent: int = 0  # vector messages the transport took, header and payload
    rejections: RejectionCounters = field(default_factory=RejectionCounters)

    def as_dict(self) -> dict[str, Any]:
        return {
            "last_round": self.last_round,
            "rounds_completed": self.rounds_completed,
            "rounds_trained": self.rounds_trained,
            "rounds_skipped": self.rounds_skipped,
            "rounds_incomplete": self.rounds_incomplete,
            "rounds_kept_own": self.rounds_kept_own,
            "rounds_waited_out": self.rounds_waited_out,
            "warnings": dict(self.warnings),
            "diverged_round": self.diverged_round,
            "inbox_dropped": dict(self.inbox_dropped),
            "inbox_unused": self.inbox_unused,
            "outbox_dropped": self.outbox_dropped,
            "sends_dropped": self.sends_dropped,
            "bytes_sent": self.bytes_sent,
            "rejections": self.rejections.as_dict(),
        }


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no NaN
    if isinstance(value, Mapping):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_clean(v) for v in value]
    return value


class NodeLog:
    """Appends events to a JSON-lines file (and optionally echoes them to a stream).

    :attr:`events` keeps every event in memory only for a log without a file (tests,
    in-process runs); a node process logging to a file keeps none, so a long run's
    memory stays flat (``benchmarks/bench_memory.py``).
    """

    def __init__(
        self,
        node: int,
        path: str | Path | None = None,
        echo: IO[str] | None = None,
        *,
        warnings: IO[str] | None = None,
    ) -> None:
        self.node = node
        self.path = Path(path) if path is not None else None
        self._file: IO[str] | None = None
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self.path.open("w", encoding="utf-8")
        self._echo = echo
        self._warnings = warnings
        self.events: list[dict[str, Any]] = []

    def event(self, name: str, /, **fields: Any) -> dict[str, Any]:
        record = _clean({"event": name, "node": self.node, "time": time.time(), **fields})
        if self._file is None:
            self.events.append(record)
        line = json.dumps(record) + "\n"
        if self._file is not None:
            self._file.write(line)
            self._file.flush()
        if self._echo is not None:
            try:
                self._echo.write(line)
                self._echo.flush()
            except (BrokenPipeError, ValueError):
                self._echo = (
                    None  # nobody reads the echo any more (the launcher died): the file has it
                )
        return record

    def warning(self, kind: str, round: int, peers: list[int], message: str) -> dict[str, Any]:
        """A ``warning`` event; its message is also printed to ``warnings`` (stderr) if given."""
        if kind not in WARNING_KINDS:
            raise ValueError(f"unknown warning kind {kind!r}; known: {', '.join(WARNING_KINDS)}")
        record = self.event("warning", kind=kind, round=round, peers=peers, message=message)
        if self._warnings is not None:
            try:
                self._warnings.write(f"warning: {message}\n")
                self._warnings.flush()
            except (BrokenPipeError, ValueError):
                self._warnings = None
        return record

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def read_node_log(path: str | Path) -> list[dict[str, Any]]:
    """The events of a node log; a torn last line (the node was killed) is skipped."""
    p = Path(path)
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise ConfigError(f"{p}: no such node log") from None
    events = []
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            if lineno == len(lines):
                break
            raise ConfigError(f"{p}:{lineno}: not JSON") from None
        if not isinstance(event, dict) or "event" not in event or "node" not in event:
            raise ConfigError(f"{p}:{lineno}: a node log line needs keys event and node")
        events.append(event)
    return events


EVAL_KEYS = ("round", "node", "byzantine", "accuracy", "test_loss", "train_loss")
#: Keys an ``eval`` event has only when the scenario asks for them (``[evaluation]``).
OPTIONAL_EVAL_KEYS = ("local_accuracy", "personalized_accuracy")


def eval_records(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The ``metrics.jsonl`` records of a node log's ``eval`` events."""
    return [
        {key: e.get(key) for key in EVAL_KEYS}
        | {key: e[key] for key in OPTIONAL_EVAL_KEYS if key in e}
        | {"distance_to_mean": None}
        for e in events
        if e["event"] == "eval"
    ]
