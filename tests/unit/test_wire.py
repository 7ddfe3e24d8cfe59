"""The wire codec: round trips, zero-copy behaviour, and every rejection decode makes."""

from __future__ import annotations

import gc
import warnings
from typing import Any

import msgpack
import numpy as np
import pytest
import torch
import zmq

from p2pfl import wire
from p2pfl.errors import DecodeError
from p2pfl.wire import Bye, Hello, Params, decode, encode

pytestmark = pytest.mark.timeout(30)

_DELETE = object()


def header_of(frames: list[Any]) -> dict[str, Any]:
    return dict(msgpack.unpackb(bytes(frames[0])))


def with_header(frames: list[Any], **changes: Any) -> list[Any]:
    """The frames with header fields replaced (or removed, with _DELETE)."""
    header = header_of(frames)
    for key, value in changes.items():
        if value is _DELETE:
            del header[key]
        else:
            header[key] = value
    return [msgpack.packb(header), *(bytes(f) for f in frames[1:])]


def params_frames() -> list[Any]:
    return encode(Params(1, 2, torch.arange(6, dtype=torch.float32)))


def hello_frames() -> list[Any]:
    return encode(Hello(4, "0.1.0", "abcd" * 4, 1000, 0))


def data_ptr_of(view: memoryview) -> int:
    return int(np.frombuffer(view, dtype=np.uint8).ctypes.data)


# ----------------------------------------------------------------------------- round trips


def test_hello_and_bye_round_trip() -> None:
    hello = Hello(sender=4, version="0.1.0", fingerprint="f" * 16, param_count=7850, round=3)
    bye = Bye(sender=9, reason="finished ✓")

    assert decode(encode(hello)) == hello
    assert decode(encode(bye)) == bye
    assert len(encode(hello)) == 1


@pytest.mark.parametrize("dtype", list(wire.DTYPES.values()))
@pytest.mark.parametrize("shape", [(0,), (1,), (5,), (2, 3), (), (2, 0, 4)])
def test_params_round_trip_bit_exact(dtype: torch.dtype, shape: tuple[int, ...]) -> None:
    g = torch.Generator().manual_seed(1)
    vector = torch.randn(shape, generator=g).to(dtype)

    frames = encode(Params(sender=2, round=11, vector=vector))
    message = decode(frames)

    assert isinstance(message, Params)
    assert (message.sender, message.round) == (2, 11)
    assert message.vector.dtype == dtype
    assert message.vector.shape == vector.shape
    assert torch.equal(
        message.vector.reshape(-1).view(torch.uint8), vector.reshape(-1).view(torch.uint8)
    )


def test_params_carries_nan_and_inf_unchanged() -> None:
    vector = torch.tensor([float("nan"), float("inf"), -float("inf"), -0.0])

    message = decode(encode(Params(0, 0, vector)))

    assert isinstance(message, Params)
    assert torch.equal(message.vector.view(torch.int32), vector.view(torch.int32))


def test_encode_makes_non_contiguous_and_grad_tensors_contiguous() -> None:
    base = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    transposed = base.t()
    with_grad = torch.ones(3, requires_grad=True)

    m1 = decode(encode(Params(0, 0, transposed)))
    m2 = decode(encode(Params(0, 0, with_grad)))

    assert isinstance(m1, Params) and isinstance(m2, Params)
    assert torch.equal(m1.vector, transposed)
    assert torch.equal(m2.vector, torch.ones(3))


def test_header_holds_the_documented_fields() -> None:
    header = header_of(params_frames())

    assert header == {
        "v": wire.PROTOCOL_VERSION,
        "kind": "params",
        "sender": 1,
        "round": 2,
        "dtype": "float32",
        "shape": [6],
        "nbytes": 24,
        "xxh3": header["xxh3"],
    }
    assert isinstance(header["xxh3"], int)


# ----------------------------------------------------------------------------- zero copy


def test_encode_payload_is_a_view_of_the_tensor() -> None:
    vector = torch.randn(1000)

    payload = encode(Params(0, 0, vector))[1]

    assert isinstance(payload, memoryview)
    assert data_ptr_of(payload) == vector.data_ptr()


def test_decode_views_writable_frames_and_copies_read_only_ones() -> None:
    frames = params_frames()
    writable = [frames[0], bytearray(frames[1])]
    read_only = [frames[0], bytes(frames[1])]

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch warns on non-writable buffers; we must not hit it
        shared = decode(writable)
        copied = decode(read_only)
        forced = decode(writable, copy=True)

    assert isinstance(shared, Params) and isinstance(copied, Params) and isinstance(forced, Params)
    assert shared.vector.data_ptr() == data_ptr_of(memoryview(writable[1]))
    assert copied.vector.data_ptr() != data_ptr_of(memoryview(read_only[1]))
    assert forced.vector.data_ptr() != shared.vector.data_ptr()
    assert torch.equal(shared.vector, copied.vector) and torch.equal(shared.vector, forced.vector)


def test_decode_copies_misaligned_payloads() -> None:
    frames = encode(Params(0, 0, torch.arange(8, dtype=torch.float64)))
    buffer = bytearray(1 + len(frames[1]))
    buffer[1:] = frames[1]
    misaligned = memoryview(buffer)[1:]

    message = decode([frames[0], misaligned])

    assert isinstance(message, Params)
    assert message.vector.data_ptr() % 8 == 0
    assert torch.equal(message.vector, torch.arange(8, dtype=torch.float64))


def test_decoded_tensor_keeps_the_zmq_frame_alive() -> None:
    frames = encode(Params(0, 0, torch.arange(100_000, dtype=torch.float32)))
    zmq_frames = [zmq.Frame(bytes(frames[0])), zmq.Frame(bytes(frames[1]))]

    message = decode(zmq_frames)
    del zmq_frames
    gc.collect()

    assert isinstance(message, Params)
    assert torch.equal(message.vector, torch.arange(100_000, dtype=torch.float32))


# ----------------------------------------------------------------------------- message checks


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda: Hello(True, "v", "f", 1, 0), "Hello.sender must be an int, got bool"),
        (lambda: Hello(-1, "v", "f", 1, 0), r"Hello.sender must be in \[0, "),
        (lambda: Hello(0, "v" * 65, "f", 1, 0), "Hello.version is longer than 64"),
        (lambda: Hello(0, "v", 5, 1, 0), "Hello.fingerprint must be a str"),  # type: ignore[arg-type]
        (lambda: Hello(0, "v", "\ud800", 1, 0), "not encodable as UTF-8"),
        (lambda: Hello(0, "v", "f", 1, -3), "Hello.round must be in"),
        (lambda: Params(0, 0, [1.0, 2.0]), "Params.vector must be a torch.Tensor"),  # type: ignore[arg-type]
        (lambda: Params(0, 0, torch.arange(3)), "dtype torch.int64; allowed: float32"),
        (lambda: Params(0, 0, torch.zeros([1] * 9)), "9 dimensions; at most 8"),
        (lambda: Params(0, 2.0, torch.zeros(1)), "Params.round must be an int"),  # type: ignore[arg-type]
        (lambda: Bye(0, "x" * 513), "Bye.reason is longer than 512"),
    ],
)
def test_messages_validate_their_fields(build: Any, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        build()


def test_encode_rejects_non_messages() -> None:
    with pytest.raises(ValueError, match="cannot encode dict"):
        encode({"kind": "hello"})  # type: ignore[arg-type]


def test_decode_rejects_bad_max_payload_argument() -> None:
    with pytest.raises(ValueError, match="max_payload_bytes must be a non-negative int"):
        decode(params_frames(), max_payload_bytes=-1)


# ----------------------------------------------------------------------------- rejections


def _cases() -> list[tuple[str, Any, str]]:
    p = params_frames
    h = hello_frames
    header = header_of(p())
    return [
        ("no frames", lambda: [], "expected 1 or 2 frames, got 0"),
        ("three frames", lambda: [*p(), b""], "expected 1 or 2 frames, got 3"),
        ("not a sequence", lambda: 5, "frames must be a sequence"),
        ("a mapping", lambda: {"a": b"x"}, "frames must be a sequence, got dict"),
        ("frame is str", lambda: ["hello"], "frame 0 is not bytes-like"),
        (
            "non-contiguous",
            lambda: [np.zeros((4, 4), np.uint8)[:, :2].data],
            "frame 0 is not a contiguous buffer",
        ),
        ("hello with payload", lambda: [*h(), b"x"], r"hello message needs 1 frame\(s\), got 2"),
        ("params without payload", lambda: p()[:1], r"params message needs 2 frame\(s\), got 1"),
        ("not msgpack", lambda: [b"\xc1"], "header is not valid msgpack"),
        ("truncated", lambda: [bytes(p()[0])[:-3], b""], "header is not valid msgpack"),
        ("trailing bytes", lambda: [bytes(h()[0]) + b"\x00"], "header is not valid msgpack"),
        ("ext type", lambda: [msgpack.packb(msgpack.ExtType(1, b"x"))], "not valid msgpack"),
        ("binary value", lambda: [msgpack.packb({"v": 1, "kind": b"hello"})], "not valid msgpack"),
        ("int key", lambda: [msgpack.packb({1: 1})], "not valid msgpack"),
        ("bad utf-8", lambda: [b"\x81\xa1v\xa2\xff\xfe"], "not valid msgpack"),
        ("too many dims", lambda: with_header(p(), shape=[1] * 9), "not valid msgpack"),
        ("list header", lambda: [msgpack.packb([1, 2])], r"header is not a map \(got list\)"),
        (
            "huge header",
            lambda: [msgpack.packb({"v": "x" * 5000})],
            "header has 50.. bytes; at most 4096",
        ),
        ("no version", lambda: with_header(h(), v=_DELETE), "no protocol version 'v'"),
        (
            "bool version",
            lambda: with_header(h(), v=True),
            "protocol version must be an int, got bool",
        ),
        (
            "future version",
            lambda: with_header(h(), v=wire.PROTOCOL_VERSION + 1),
            f"unsupported protocol version {wire.PROTOCOL_VERSION + 1}",
        ),
        ("no kind", lambda: with_header(h(), kind=_DELETE), "no message 'kind'"),
        ("unknown kind", lambda: with_header(h(), kind="ping"), "unknown message kind 'ping'"),
        ("int kind", lambda: with_header(h(), kind=3), "unknown message kind 3"),
        (
            "missing key",
            lambda: with_header(h(), fingerprint=_DELETE),
            "hello header is missing keys: fingerprint",
        ),
        (
            "extra key",
            lambda: with_header(p(), note="hi"),
            "params header has unexpected keys: note",
        ),
        (
            "bool sender",
            lambda: with_header(h(), sender=False),
            "'sender' must be an int, got bool",
        ),
        ("negative sender", lambda: with_header(h(), sender=-2), r"'sender' must be in \[0, "),
        ("str round", lambda: with_header(p(), round="3"), "'round' must be an int, got str"),
        ("huge round", lambda: with_header(p(), round=2**64 - 1), r"'round' must be in \[0, "),
        (
            "float param count",
            lambda: with_header(h(), param_count=1.0),
            "'param_count' must be an int, got float",
        ),
        ("long version", lambda: with_header(h(), version="x" * 65), "'version' is longer than 64"),
        (
            "int reason",
            lambda: with_header(encode(Bye(1, "r")), reason=3),
            "'reason' must be a str",
        ),
        (
            "bad dtype",
            lambda: with_header(p(), dtype="int8"),
            "dtype 'int8' is not allowed; allowed: float32",
        ),
        ("object dtype", lambda: with_header(p(), dtype="object"), "dtype 'object' is not allowed"),
        ("shape not list", lambda: with_header(p(), shape=6), "'shape' must be a list, got int"),
        ("negative dim", lambda: with_header(p(), shape=[-6]), r"outside \[0, "),
        ("huge dim", lambda: with_header(p(), shape=[2**41, 0]), r"outside \[0, "),
        ("float dim", lambda: with_header(p(), shape=[6.0]), "non-int dimension"),
        ("bool dim", lambda: with_header(p(), shape=[True]), "non-int dimension"),
        (
            "shape vs nbytes",
            lambda: with_header(p(), shape=[7]),
            "float32 needs 28 bytes, header says 24",
        ),
        (
            "dtype vs nbytes",
            lambda: with_header(p(), dtype="float64"),
            "float64 needs 48 bytes, header says 24",
        ),
        (
            "payload vs nbytes",
            lambda: [p()[0], bytes(p()[1])[:-4]],
            "payload frame has 20 bytes, header says 24",
        ),
        ("negative nbytes", lambda: with_header(p(), nbytes=-1), r"'nbytes' must be in \[0, "),
        ("checksum type", lambda: with_header(p(), xxh3="x"), "'xxh3' must be an int"),
        (
            "checksum mismatch",
            lambda: with_header(p(), xxh3=(header["xxh3"] + 1) % 2**64),
            "checksum mismatch",
        ),
        (
            "corrupt payload",
            lambda: [p()[0], b"\x01" + bytes(p()[1])[1:]],
            "checksum mismatch",
        ),
    ]


@pytest.mark.parametrize(("name", "frames", "match"), _cases(), ids=[c[0] for c in _cases()])
def test_decode_rejects_with_a_named_reason(name: str, frames: Any, match: str) -> None:
    with pytest.raises(DecodeError, match=match):
        decode(frames())


def test_public_names_exist() -> None:
    assert all(hasattr(wire, name) for name in wire.__all__)


def test_decode_rejects_payload_over_the_limit() -> None:
    frames = params_frames()

    with pytest.raises(DecodeError, match="payload of 24 bytes exceeds the limit of 20"):
        decode(frames, max_payload_bytes=20)
    assert isinstance(decode(frames, max_payload_bytes=24), Params)
