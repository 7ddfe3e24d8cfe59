"""Properties of the wire codec: exact round trips, and decode failing only with DecodeError."""

from __future__ import annotations

import math
from typing import Any

import msgpack
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from p2pfl import wire
from p2pfl.errors import DecodeError
from p2pfl.wire import Alive, Bye, Hello, Params, decode, encode

pytestmark = pytest.mark.timeout(120)

ITEMSIZE = {name: torch.empty((), dtype=d).element_size() for name, d in wire.DTYPES.items()}
senders = st.integers(0, wire.MAX_SENDER)
rounds = st.integers(0, wire.MAX_ROUND)
shapes = st.lists(st.integers(0, 6), min_size=0, max_size=3).map(tuple)


@st.composite
def params_messages(draw: st.DrawFn) -> Params:
    """Any bit pattern as payload, so NaNs, infinities and subnormals all occur."""
    dtype_name = draw(st.sampled_from(sorted(wire.DTYPES)))
    shape = draw(shapes)
    nbytes = math.prod(shape) * ITEMSIZE[dtype_name]
    raw = draw(st.binary(min_size=nbytes, max_size=nbytes))
    vector = (
        torch.frombuffer(bytearray(raw), dtype=torch.uint8)
        if raw
        else torch.empty(0, dtype=torch.uint8)
    )
    vector = vector.view(wire.DTYPES[dtype_name]).reshape(shape)
    return Params(draw(senders), draw(rounds), vector)


def texts(max_size: int) -> st.SearchStrategy[str]:
    return st.text(st.characters(codec="utf-8"), max_size=max_size)


hellos = st.builds(
    Hello,
    sender=senders,
    version=texts(wire.MAX_VERSION_CHARS),
    fingerprint=texts(wire.MAX_FINGERPRINT_CHARS),
    param_count=st.integers(0, wire.MAX_PARAM_COUNT),
    round=rounds,
)
byes = st.builds(Bye, sender=senders, reason=texts(wire.MAX_REASON_CHARS))
alives = st.builds(
    Alive,
    sender=senders,
    round=rounds,
    greeted=st.booleans(),
    wait_ms=st.integers(0, wire.MAX_WAIT_MS),
)


def same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.shape == b.shape and torch.equal(
        a.reshape(-1).view(torch.uint8), b.reshape(-1).view(torch.uint8)
    )


@given(params_messages(), st.booleans())
@settings(max_examples=150, deadline=None)
def test_params_round_trip_is_bit_exact(message: Params, as_bytes: bool) -> None:
    frames: list[Any] = encode(message)
    if as_bytes:  # as a receiver's read-only buffers would be
        frames = [bytes(f) for f in frames]

    decoded = decode(frames)

    assert isinstance(decoded, Params)
    assert (decoded.sender, decoded.round) == (message.sender, message.round)
    assert decoded.vector.dtype == message.vector.dtype
    assert same_bits(decoded.vector, message.vector)


@given(st.one_of(hellos, alives, byes))
@settings(max_examples=150, deadline=None)
def test_hello_alive_and_bye_round_trip(message: Hello | Alive | Bye) -> None:
    assert decode(encode(message)) == message


def decodes_or_raises_decode_error(frames: Any) -> None:
    try:
        result = decode(frames)
    except DecodeError:
        return
    assert isinstance(result, Hello | Alive | Params | Bye)


@given(st.lists(st.binary(max_size=64), max_size=4))
@settings(max_examples=300, deadline=None)
def test_random_frames_only_raise_decode_error(frames: list[bytes]) -> None:
    decodes_or_raises_decode_error(frames)


@given(
    st.one_of(params_messages(), hellos, alives, byes),
    st.data(),
)
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_mutated_frames_only_raise_decode_error(message: wire.Message, data: st.DataObject) -> None:
    frames = [bytearray(f) for f in encode(message)]
    index = data.draw(st.integers(0, len(frames) - 1))
    frame = frames[index]
    action = data.draw(st.sampled_from(["flip", "truncate", "extend", "drop", "duplicate"]))
    if action == "flip" and frame:
        pos = data.draw(st.integers(0, len(frame) - 1))
        frame[pos] ^= data.draw(st.integers(1, 255))
    elif action == "truncate":
        del frame[data.draw(st.integers(0, len(frame))) :]
    elif action == "extend":
        frame.extend(data.draw(st.binary(min_size=1, max_size=16)))
    elif action == "drop":
        del frames[index]
    else:
        frames.insert(index, bytearray(frame))

    decodes_or_raises_decode_error(frames)


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**64 - 1),
    st.floats(allow_nan=True),
    st.text(max_size=12),
    st.binary(max_size=12),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
keys = st.sampled_from(
    [
        "v",
        "kind",
        "sender",
        "round",
        "version",
        "fingerprint",
        "param_count",
        "dtype",
        "shape",
        "nbytes",
        "xxh3",
        "reason",
        "greeted",
        "wait_ms",
        "x",
    ]
)


@given(
    st.dictionaries(keys, values, max_size=9),
    st.sampled_from([None, "hello", "alive", "params", "bye"]),
    st.lists(st.binary(max_size=32), max_size=2),
)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_structured_headers_only_raise_decode_error(
    header: dict[str, Any], kind: str | None, rest: list[bytes]
) -> None:
    if kind is not None:  # steer most examples past the version and kind checks
        header = {**header, "v": wire.PROTOCOL_VERSION, "kind": kind}

    decodes_or_raises_decode_error([msgpack.packb(header), *rest])
