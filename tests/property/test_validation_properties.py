"""Properties of the boundary checks over arbitrary messages and arbitrary frames.

- any message either passes or raises RejectedMessage with a known label;
- a message that passes satisfies every expectation, and passing twice is a duplicate;
- ``screen`` never raises, whatever the frames, and moves exactly one counter per call.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from p2pfl import wire
from p2pfl.errors import RejectedMessage
from p2pfl.validation import REASONS, Expectations, RejectionCounters, screen, validate

pytestmark = pytest.mark.timeout(120)
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

D = 6
NODES = st.integers(min_value=0, max_value=6)
ROUNDS = st.integers(min_value=0, max_value=12)
WAITS = st.integers(min_value=0, max_value=wire.MAX_WAIT_MS)


@st.composite
def vectors(draw: st.DrawFn) -> torch.Tensor:
    """Mostly well-formed float32 (d,) vectors; sometimes another dtype, shape or NaN/Inf."""
    dtype = draw(st.sampled_from([torch.float32] * 4 + list(wire.DTYPES.values())))
    shape = draw(st.sampled_from([(D,)] * 4 + [(D - 1,), (D + 1,), (2, 3), ()]))
    n = math.prod(shape)
    finite = st.floats(-1e3, 1e3, width=32)
    values = st.sampled_from([math.nan, math.inf, -math.inf]) | finite
    elements = draw(st.sampled_from([finite, finite, values]))
    data = draw(st.lists(elements, min_size=n, max_size=n))
    return torch.tensor(data, dtype=torch.float32).reshape(shape).to(dtype)


@st.composite
def expectations(draw: st.DrawFn) -> Expectations:
    node = draw(NODES)
    neighbours = draw(st.frozensets(NODES.filter(lambda n: n != node), min_size=1, max_size=4))
    return Expectations(
        node_id=node,
        neighbours=neighbours,
        param_count=D,
        round=draw(ROUNDS),
        rounds_ahead=draw(st.integers(0, 3)),
        rounds_behind=draw(st.integers(0, 2)),
        fingerprint=draw(st.sampled_from([None, "fp"])),
        last_round=draw(st.one_of(st.none(), ROUNDS)),
        refused=frozenset(draw(st.lists(st.sampled_from([1, 2, 3]), max_size=1))),
    )


@st.composite
def messages(draw: st.DrawFn, e: Expectations | None = None) -> wire.Message:
    """Any message; given ``e``, mostly from a neighbour and near the current round."""
    kind = draw(st.sampled_from(["params", "params", "params", "hello", "alive", "bye"]))
    near = e is not None and draw(st.sampled_from([True] * 3 + [False]))
    sender = draw(st.sampled_from(sorted(e.neighbours)) if near and e else NODES)
    rnd = draw(st.integers(max(0, e.round - 2), e.round + 2) if near and e else ROUNDS)
    if kind == "params":
        return wire.Params(sender=sender, round=rnd, vector=draw(vectors()))
    if kind == "hello":
        return wire.Hello(
            sender=sender,
            version="0.1.0",
            fingerprint=draw(st.sampled_from(["fp", "other"])),
            param_count=draw(st.sampled_from([D, D, D + 1])),
            round=rnd,
        )
    if kind == "alive":
        return wire.Alive(
            sender=sender, round=rnd, greeted=draw(st.booleans()), wait_ms=draw(WAITS)
        )
    return wire.Bye(sender=sender, reason="bye")


def transport_senders(message: wire.Message) -> st.SearchStrategy[int | None]:
    """Usually the claimed sender (an honest connection), sometimes anyone or unknown."""
    return st.sampled_from([True] * 4 + [False]).flatmap(
        lambda honest: st.just(message.sender) if honest else st.one_of(st.none(), NODES)
    )


@SETTINGS
@given(data=st.data(), e=expectations())
def test_any_message_passes_or_is_rejected_with_a_known_label(
    data: st.DataObject, e: Expectations
) -> None:
    message = data.draw(messages(e))
    peer = data.draw(transport_senders(message))
    seen: set[tuple[int, int]] = set()
    try:
        validate(message, peer, e, seen)
    except RejectedMessage as exc:
        assert exc.reason in REASONS
        assert seen == set()
        return
    # Passed: then every expectation holds.
    assert message.sender == peer and message.sender in e.neighbours
    assert message.sender not in e.refused or isinstance(message, wire.Hello)
    if isinstance(message, wire.Hello | wire.Alive) and e.last_round is not None:
        assert message.round <= e.last_round
    if isinstance(message, wire.Params):
        assert e.round - e.rounds_behind <= message.round <= e.round + e.rounds_ahead
        assert message.vector.dtype == e.dtype and message.vector.shape == (D,)
        assert bool(torch.isfinite(message.vector).all())
        assert seen == {(message.sender, message.round)}
        with pytest.raises(RejectedMessage, match="duplicate"):
            validate(message, peer, e, seen)
    if isinstance(message, wire.Hello):
        assert message.param_count == D
        assert e.fingerprint is None or message.fingerprint == e.fingerprint


def _mutate(frames: list[Any], data: st.DataObject) -> list[bytes]:
    """Flip, truncate, extend, drop or add frames of a valid encoding."""
    frames = [bytes(f) for f in frames]
    op = data.draw(st.sampled_from(["flip", "truncate", "extend", "drop", "add", "none"]))
    i = data.draw(st.integers(0, len(frames) - 1))
    f = bytearray(frames[i])
    if op == "flip" and f:
        j = data.draw(st.integers(0, len(f) - 1))
        f[j] ^= data.draw(st.integers(1, 255))
    elif op == "truncate":
        f = f[: data.draw(st.integers(0, len(f)))]
    elif op == "extend":
        f += data.draw(st.binary(min_size=1, max_size=16))
    elif op == "drop":
        return frames[:i] + frames[i + 1 :]
    elif op == "add":
        return [*frames, data.draw(st.binary(max_size=16))]
    frames[i] = bytes(f)
    return frames


@settings(SETTINGS, max_examples=100)
@given(data=st.data(), e=expectations())
def test_screen_never_raises_and_counts_every_message_once(
    data: st.DataObject, e: Expectations
) -> None:
    counters = RejectionCounters()
    seen: set[tuple[int, int]] = set()
    calls = data.draw(st.integers(1, 8))
    for _ in range(calls):
        if data.draw(st.booleans()):
            message = data.draw(messages(e))
            frames: list[Any] = _mutate(wire.encode(message), data)
        else:
            frames = data.draw(st.lists(st.binary(max_size=64), max_size=3))
        peer = data.draw(st.one_of(st.none(), NODES))
        before = counters.as_dict()
        result = screen(frames, peer, e, seen, counters)
        after = counters.as_dict()
        assert counters.total == before["accepted"] + before["rejected"] + 1
        assert (result is not None) == (after["accepted"] == before["accepted"] + 1)
        assert set(after["by_reason"]) <= set(REASONS)
    assert counters.total == calls
