"""Checks every incoming message passes before it reaches training or aggregation.

A node hands each received message to :func:`screen` (frames in, message or
``None`` out) or, once decoded, to :func:`validate`. A refused message raises
:class:`~p2pfl.errors.RejectedMessage` whose ``reason`` is one of :data:`REASONS`,
stable labels that metrics and ``summary.json`` report per peer:

=================  ==============================================================
reason             the message ...
=================  ==============================================================
``oversized``      has more bytes than the model's vector can need
``decode_error``   is not a valid message of the wire protocol (:func:`p2pfl.wire.decode`)
``impersonation``  claims a sender other than the node that authenticated it
``not_neighbour``  comes from a node that is not this node's neighbour
``stale_round``    is for a round before the window (already aggregated)
``future_round``   is for a round more than ``rounds_ahead`` after the current one, or
                   announces (hello, alive) a round past the run's last
``duplicate``      repeats a (sender, round) already accepted
``wrong_encoding`` carries a vector compressed otherwise than this run compresses (dense
                   instead of sparse, another count of values, block or number of levels)
``wrong_dtype``    carries a vector of another dtype than the run sends
``wrong_length``   carries a vector of another length
``wrong_model``    announces a model of another length or fingerprint, or comes from a
                   neighbour that did (until it announces this node's model)
``bad_index``      carries sparse indices out of ``[0, d)`` or not strictly increasing
``out_of_range``   carries quantization codes beyond the run's levels, or negative scales
``non_finite``     carries NaN or infinite values
=================  ==============================================================

Vectors are dense (:class:`~p2pfl.wire.Params`) or compressed
(:class:`~p2pfl.wire.Packed`); :attr:`Expectations.encoding` says which shape,
exactly, this run's neighbours send (:class:`~p2pfl.compression.Encoding`).

Checks run cheapest first and the first failure decides the reason, so every
refused message is counted exactly once. A message that passes is recorded in
``seen`` (Params only). None of this can stop the node: only
:class:`~p2pfl.errors.RejectedMessage` comes out, and :func:`count_rejection`
turns it into a counter increment.

Not caught here, by design: a listed neighbour sending well-formed but malicious
vectors. That is what robust aggregation is for.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import zmq

from p2pfl import wire
from p2pfl.compression import Encoding, QuantPayload, SparsePayload, payload_finite
from p2pfl.errors import DecodeError, RejectedMessage
from p2pfl.security.auth import check_claimed_sender

__all__ = [
    "REASONS",
    "Expectations",
    "RejectionCounters",
    "count_rejection",
    "forget_before",
    "screen",
    "validate",
]

#: Every label a rejection can carry, in the order the checks run.
REASONS: tuple[str, ...] = (
    "oversized",
    "decode_error",
    "impersonation",
    "not_neighbour",
    "stale_round",
    "future_round",
    "duplicate",
    "wrong_encoding",
    "wrong_dtype",
    "wrong_length",
    "wrong_model",
    "bad_index",
    "out_of_range",
    "non_finite",
)

T = TypeVar("T")


@dataclass(frozen=True)
class Expectations:
    """What node ``node_id`` accepts right now; :meth:`at_round` moves the window.

    Params for rounds ``round - rounds_behind .. round + rounds_ahead`` pass (the
    node buffers those ahead of it); earlier ones are stale, later ones too far
    ahead. ``max_bytes`` bounds a whole message (all frames); by default the
    vector's size plus the largest header :mod:`p2pfl.wire` allows.
    ``fingerprint``, when set, must match a Hello's model fingerprint.
    ``last_round``, when set, is the run's last round: a Hello or Alive announcing
    a later one is refused (``future_round``), so no claim can point past the run.
    ``refused`` are neighbours that announced another model: everything but a new
    Hello from them is refused (``wrong_model``) until they announce this one.
    ``encoding`` is the shape of every vector message (default: dense ``dtype``,
    ``param_count`` values); a compressed run passes its operator's
    (:meth:`p2pfl.compression.Compressor.encoding`), and ``max_bytes`` then follows it.
    """

    node_id: int
    neighbours: frozenset[int]
    param_count: int
    round: int = 0
    rounds_ahead: int = 1
    rounds_behind: int = 0
    dtype: torch.dtype = torch.float32
    max_bytes: int = -1  # -1: derived from param_count and dtype
    fingerprint: str | None = None
    last_round: int | None = None
    refused: frozenset[int] = frozenset()
    encoding: Encoding | None = None

    def __post_init__(self) -> None:
        for name in ("node_id", "param_count", "round", "rounds_ahead", "rounds_behind"):
            value = getattr(self, name)
            if type(value) is not int or value < 0:
                raise ValueError(f"Expectations.{name} must be a non-negative int, got {value!r}")
        neighbours = frozenset(self.neighbours)
        for n in neighbours:
            if type(n) is not int or n < 0:
                raise ValueError(f"Expectations.neighbours must hold node ids, got {n!r}")
        if self.node_id in neighbours:
            raise ValueError(f"node {self.node_id} cannot be its own neighbour")
        object.__setattr__(self, "neighbours", neighbours)
        last = self.last_round
        if last is not None and (type(last) is not int or last < 0):
            raise ValueError(f"Expectations.last_round must be a non-negative int, got {last!r}")
        if self.dtype not in wire.DTYPES.values():
            raise ValueError(f"Expectations.dtype {self.dtype} is not a wire dtype")
        if self.encoding is None:
            object.__setattr__(self, "encoding", Encoding("dense", self.param_count, self.dtype))
        elif self.encoding.length != self.param_count:
            raise ValueError(
                f"Expectations.encoding is for {self.encoding.length} values, "
                f"the model has {self.param_count}"
            )
        if self.max_bytes == -1:
            object.__setattr__(
                self, "max_bytes", self.expected.payload_bytes + wire.MAX_HEADER_BYTES
            )
        elif type(self.max_bytes) is not int or self.max_bytes < 1:
            raise ValueError(
                f"Expectations.max_bytes must be a positive int, got {self.max_bytes!r}"
            )

    @property
    def expected(self) -> Encoding:
        """:attr:`encoding`, never None after construction."""
        assert self.encoding is not None
        return self.encoding

    def at_round(self, round: int) -> Expectations:
        """The same expectations with the window around ``round``."""
        return dataclasses.replace(self, round=round)


def forget_before(seen: set[tuple[int, int]], round: int) -> None:
    """Drop ``(sender, r)`` entries with ``r < round`` (call when the window moves: keeps ``seen`` bounded)."""
    for key in [k for k in seen if k[1] < round]:
        seen.discard(key)


# ----------------------------------------------------------------------------- checks


def _check_params(
    message: wire.Params | wire.Packed, expectations: Expectations, seen: set[tuple[int, int]]
) -> None:
    e = expectations
    if message.round < e.round - e.rounds_behind:
        raise RejectedMessage(
            "stale_round", f"round {message.round} from node {message.sender}; now at {e.round}"
        )
    if message.round > e.round + e.rounds_ahead:
        raise RejectedMessage(
            "future_round",
            f"round {message.round} from node {message.sender}; now at {e.round}, "
            f"buffering up to {e.round + e.rounds_ahead}",
        )
    if (message.sender, message.round) in seen:
        raise RejectedMessage(
            "duplicate", f"second vector from node {message.sender} for round {message.round}"
        )
    if isinstance(message, wire.Packed):
        _check_packed(message, e.expected)
        return
    v = message.vector
    if e.expected.kind != "dense":
        raise RejectedMessage(
            "wrong_encoding", f"a dense vector; this run sends {e.expected.kind} vectors"
        )
    if v.dtype != e.expected.dtype:
        raise RejectedMessage(
            "wrong_dtype", f"vector is {v.dtype}, the run sends {e.expected.dtype}"
        )
    if v.ndim != 1 or v.numel() != e.param_count:
        raise RejectedMessage(
            "wrong_length",
            f"vector of shape {tuple(v.shape)}; the model has {e.param_count} values",
        )
    if v.numel() * v.element_size() > e.max_bytes:
        raise RejectedMessage("oversized", f"vector of {v.numel() * v.element_size()} bytes")
    if not bool(torch.isfinite(v).all()):
        raise RejectedMessage("non_finite", f"vector from node {message.sender} has NaN or Inf")


def _check_packed(message: wire.Packed, expected: Encoding) -> None:
    """A compressed vector: the run's encoding, indices or codes in range, finite values."""
    p = message.payload
    got = Encoding.of(p)
    if got.kind != expected.kind:
        raise RejectedMessage(
            "wrong_encoding", f"a {got.kind} vector; this run sends {expected.kind} vectors"
        )
    if got.length != expected.length:
        raise RejectedMessage(
            "wrong_length", f"a vector of {got.length} values; the model has {expected.length}"
        )
    if got != expected:
        raise RejectedMessage(
            "wrong_encoding",
            f"count {got.count}, block {got.block}, levels {got.levels}; this run sends "
            f"count {expected.count}, block {expected.block}, levels {expected.levels}",
        )
    sender = message.sender
    if isinstance(p, SparsePayload):
        idx = p.indices
        if idx.numel() and (
            int(idx[0]) < 0 or int(idx[-1]) >= p.length or not bool((idx[1:] > idx[:-1]).all())
        ):
            raise RejectedMessage(
                "bad_index",
                f"sparse vector from node {sender}: indices not strictly increasing in "
                f"[0, {p.length})",
            )
    else:
        assert isinstance(p, QuantPayload)
        lo, hi = torch.aminmax(p.codes) if p.codes.numel() else (torch.tensor(0), torch.tensor(0))
        if int(lo) < -p.levels or int(hi) > p.levels:
            raise RejectedMessage(
                "out_of_range", f"quantized vector from node {sender}: a code beyond {p.levels}"
            )
        if bool((p.scales < 0).any()):
            raise RejectedMessage(
                "out_of_range", f"quantized vector from node {sender}: a negative scale"
            )
    if not payload_finite(p):  # quantized: also a scale that overflows once decoded
        raise RejectedMessage("non_finite", f"vector from node {sender} has NaN or Inf")


def _check_announced_round(message: wire.Hello | wire.Alive, expectations: Expectations) -> None:
    last = expectations.last_round
    if last is not None and message.round > last:
        raise RejectedMessage(
            "future_round",
            f"node {message.sender} announces round {message.round}; the run has {last} rounds",
        )


def _check_hello(message: wire.Hello, expectations: Expectations) -> None:
    _check_announced_round(message, expectations)
    if message.param_count != expectations.param_count:
        raise RejectedMessage(
            "wrong_model",
            f"node {message.sender} has a model of {message.param_count} values, "
            f"this node {expectations.param_count}",
        )
    fp = expectations.fingerprint
    if fp is not None and message.fingerprint != fp:
        raise RejectedMessage(
            "wrong_model",
            f"node {message.sender} has model fingerprint {message.fingerprint!r}, this node {fp!r} "
            "(it covers the architecture, which parameters are frozen and their values)",
        )


def validate(
    message: wire.Message,
    transport_sender: int | None,
    expectations: Expectations,
    seen: set[tuple[int, int]],
) -> None:
    """Raise :class:`~p2pfl.errors.RejectedMessage` unless ``message`` may be used.

    ``transport_sender`` is the node that authenticated the connection
    (:meth:`p2pfl.security.SecurityContext.sender_of`), ``None`` if unknown.
    On success a Params message's ``(sender, round)`` is added to ``seen``.
    A Hello's or Alive's round is checked only against ``last_round`` (a restarted node
    announces where it is, behind or ahead of this node).
    """
    if not isinstance(message, wire.Hello | wire.Alive | wire.Params | wire.Packed | wire.Bye):
        raise TypeError(f"validate() takes a wire message, got {type(message).__name__}")
    check_claimed_sender(message.sender, transport_sender)
    if message.sender not in expectations.neighbours:
        raise RejectedMessage(
            "not_neighbour",
            f"node {message.sender} is not a neighbour of node {expectations.node_id}",
        )
    if message.sender in expectations.refused and not isinstance(message, wire.Hello):
        raise RejectedMessage(
            "wrong_model",
            f"node {message.sender} announced another model; refused until it says hello "
            "with this node's",
        )
    if isinstance(message, wire.Params | wire.Packed):
        _check_params(message, expectations, seen)
        seen.add((message.sender, message.round))
    elif isinstance(message, wire.Hello):
        _check_hello(message, expectations)
    elif isinstance(message, wire.Alive):
        _check_announced_round(message, expectations)


# ----------------------------------------------------------------------------- counting


class RejectionCounters:
    """Accepted messages per peer, and rejected ones per peer and reason.

    Peers are node ids (``None``: unknown, reported as ``"unknown"``). At most
    ``max_peers`` distinct peers are tracked; further ones are pooled under
    ``"other"`` so an insecure node flooded with made-up ids keeps bounded memory.
    Not thread-safe: meant for one asyncio event loop.
    """

    def __init__(self, max_peers: int = 1024) -> None:
        if type(max_peers) is not int or max_peers < 1:
            raise ValueError(f"max_peers must be a positive int, got {max_peers!r}")
        self.max_peers = max_peers
        self._accepted: Counter[str] = Counter()
        self._rejected: dict[str, Counter[str]] = {}

    def _key(self, peer: int | None) -> str:
        key = "unknown" if peer is None else str(peer)
        known = key in self._accepted or key in self._rejected
        if not known and len(set(self._accepted) | set(self._rejected)) >= self.max_peers:
            return "other"
        return key

    def accept(self, peer: int | None) -> None:
        self._accepted[self._key(peer)] += 1

    def reject(self, peer: int | None, reason: str) -> None:
        if reason not in REASONS:
            raise ValueError(f"unknown rejection reason {reason!r}; known: {', '.join(REASONS)}")
        self._rejected.setdefault(self._key(peer), Counter())[reason] += 1

    @property
    def accepted(self) -> int:
        return sum(self._accepted.values())

    @property
    def rejected(self) -> int:
        return sum(sum(c.values()) for c in self._rejected.values())

    @property
    def total(self) -> int:
        """Every message counted, accepted or not."""
        return self.accepted + self.rejected

    def by_reason(self) -> dict[str, int]:
        """Rejections per reason over all peers (reasons with zero omitted)."""
        out: Counter[str] = Counter()
        for c in self._rejected.values():
            out.update(c)
        return {r: out[r] for r in REASONS if out[r]}

    def of(self, peer: int | None) -> dict[str, int]:
        """Rejections of one peer, per reason."""
        key = "unknown" if peer is None else str(peer)
        c = self._rejected.get(key, Counter())
        return {r: c[r] for r in REASONS if c[r]}

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data for metrics and ``summary.json``."""
        peers = sorted(set(self._accepted) | set(self._rejected), key=_peer_order)
        empty: Counter[str] = Counter()
        by_peer: dict[str, Any] = {}
        for p in peers:
            c = self._rejected.get(p, empty)
            by_peer[p] = {
                "accepted": self._accepted.get(p, 0),
                "rejected": {r: c[r] for r in REASONS if c[r]},
            }
        return {
            "accepted": self.accepted,
            "rejected": self.rejected,
            "by_reason": self.by_reason(),
            "by_peer": by_peer,
        }


def _peer_order(key: str) -> tuple[int, int | str]:
    return (0, int(key)) if key.isdigit() else (1, key)


def count_rejection(
    counters: RejectionCounters, peer: int | None, check: Callable[[], T]
) -> T | None:
    """Run ``check()``; count exactly one outcome for ``peer`` and return its result or ``None``.

    :class:`~p2pfl.errors.RejectedMessage` counts its reason;
    :class:`~p2pfl.errors.DecodeError` counts ``decode_error``; success counts an
    acceptance. Anything else is a bug and propagates.
    """
    try:
        result = check()
    except RejectedMessage as exc:
        counters.reject(peer, exc.reason)
        return None
    except DecodeError:
        counters.reject(peer, "decode_error")
        return None
    counters.accept(peer)
    return result


def _frame_bytes(frames: Iterable[object]) -> int:
    total = 0
    for i, frame in enumerate(frames):
        try:
            view = frame.buffer if isinstance(frame, zmq.Frame) else memoryview(frame)  # type: ignore[arg-type]
            total += view.nbytes
        except TypeError:
            raise RejectedMessage("decode_error", f"frame {i} is not bytes-like") from None
    return total


def screen(
    frames: Sequence[wire.Frame],
    transport_sender: int | None,
    expectations: Expectations,
    seen: set[tuple[int, int]],
    counters: RejectionCounters,
) -> wire.Message | None:
    """Size check, :func:`p2pfl.wire.decode`, :func:`validate`, and count the outcome.

    Returns the message when it passes, else ``None``; either way exactly one
    counter of ``counters`` moves (under ``transport_sender``). Never raises for
    bad input.
    """

    def check() -> wire.Message:
        if not isinstance(frames, Sequence):
            raise RejectedMessage(
                "decode_error", f"frames must be a sequence, got {type(frames).__name__}"
            )
        size = _frame_bytes(frames)
        if size > expectations.max_bytes:
            raise RejectedMessage(
                "oversized", f"message of {size} bytes; at most {expectations.max_bytes}"
            )
        message = wire.decode(frames, max_payload_bytes=expectations.max_bytes)
        validate(message, transport_sender, expectations, seen)
        return message

    return count_rejection(counters, transport_sender, check)
