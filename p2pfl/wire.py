"""The wire format: p2pfl messages to and from ZeroMQ frames, as pure functions.

A message is one multipart message of one or two frames::

    frame 0   header   a msgpack map, at most MAX_HEADER_BYTES bytes
    frame 1   payload  (Params: the tensor's bytes, C order, little-endian;
                        Packed: a compressed vector, see below)

Header keys, all required, no others accepted:

    every kind   v (protocol version, int), kind (str), sender (int)
    "hello"      round, version, fingerprint, param_count
    "alive"      round, greeted (bool), wait_ms
    "params"     round, dtype, shape, nbytes, xxh3
    "sparse"     round, length, count, nbytes, xxh3
    "quant"      round, length, block, levels, nbytes, xxh3
    "bye"        reason

Compressed vectors (:class:`Packed`, :mod:`p2pfl.compression.payload`) have one
payload frame each, little-endian: ``sparse`` holds ``count`` int32 indices then
``count`` float32 values (``nbytes = 8 * count``); ``quant`` holds
``ceil(length / block)`` float32 scales then ``length`` int8 codes. Half-precision
vectors are ordinary ``params`` of dtype float16 or bfloat16. :func:`decode`
checks that sizes, counts and checksum agree; what the values must be (indices
increasing and in range, codes within ``levels``, everything finite) is checked
by :mod:`p2pfl.validation`, which knows what this run's neighbours must send.
:func:`encoded_nbytes` is what a message costs on the wire (header and payload),
the one definition of the byte counts both the simulator and the node report.

``xxh3`` is the 64-bit XXH3 hash of the payload (``xxhash.xxh3_64_intdigest``): an
end-to-end check against truncation and bugs, not against an attacker (that is
CurveZMQ's job, one layer down). XXH3 rather than ``zlib.crc32`` because it runs at
memory speed (about 5x crc32 here), which keeps the codec near raw ZeroMQ throughput.

Zero copy, both ways
    :func:`encode` returns the payload as a ``memoryview`` of the tensor's own memory.
    ZeroMQ may still be reading it in its I/O thread after ``send`` returns, so do
    not modify a tensor in place once it has been encoded (aggregation makes a new
    tensor every round, so the node never needs to). Encode once, send the same
    frames to every neighbour: the checksum is then computed once.

    :func:`decode` returns ``Params.vector`` as a view of the payload frame's memory
    when that memory is writable and aligned (``zmq.Frame`` and ``bytearray``: the
    transports hand every received message its own private buffer, so the node may
    use, and even modify, the tensor freely; it keeps the frame alive). A read-only
    (``bytes``) or misaligned buffer is copied once, because torch has no read-only
    tensors; ``decode(..., copy=True)`` always copies.

Trust
    :func:`decode` treats its input as hostile. Anything that is not exactly a
    message of this protocol raises :class:`~p2pfl.errors.DecodeError` with a
    message naming the problem, and nothing else: wrong frame count, a header that
    is not msgpack or not a map, missing/unexpected keys, wrong types (``True`` is
    not an int), an unsupported protocol version, an unknown kind, a dtype outside
    :data:`DTYPES`, negative or oversized dimensions, a shape that does not match
    the payload length, a payload over ``max_payload_bytes``, a checksum mismatch.
    msgpack runs with strict limits (no binary or extension types, short strings,
    tiny arrays and maps, string keys only). No pickle, no eval. A well-formed
    message may still carry NaNs or a wrong round: rejecting those is the node's job.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

import msgpack
import numpy as np
import torch
import xxhash
import zmq

from p2pfl.compression.payload import (
    MAX_LEVELS,
    DensePayload,
    Payload,
    QuantPayload,
    SparsePayload,
)
from p2pfl.errors import DecodeError

__all__ = [
    "DEFAULT_MAX_PAYLOAD_BYTES",
    "DTYPES",
    "MAX_HEADER_BYTES",
    "PROTOCOL_VERSION",
    "Alive",
    "Bye",
    "Frame",
    "Hello",
    "Message",
    "Packed",
    "Params",
    "decode",
    "encode",
    "encoded_nbytes",
    "payload_of",
    "vector_message",
]

PROTOCOL_VERSION = 3  # 2: the alive heartbeat; 3: compressed vectors (sparse, quant)
MAX_HEADER_BYTES = 4096
DEFAULT_MAX_PAYLOAD_BYTES = 512 * 2**20
MAX_NDIM = 8
MAX_DIM = 2**40
MAX_SENDER = 2**31 - 1
MAX_ROUND = 2**63 - 1
MAX_PARAM_COUNT = 2**40
MAX_VERSION_CHARS = 64
MAX_FINGERPRINT_CHARS = 128
MAX_REASON_CHARS = 512
MAX_WAIT_MS = 2**31 - 1

#: Tensor dtypes allowed on the wire, by header name.
DTYPES: Mapping[str, torch.dtype] = {
    "float32": torch.float32,
    "float64": torch.float64,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
}
_DTYPE_NAMES = {dtype: name for name, dtype in DTYPES.items()}

#: What a frame may be: what ``encode`` returns and what the transports deliver.
Frame: TypeAlias = bytes | bytearray | memoryview | zmq.Frame

_LITTLE = sys.byteorder == "little"


def _check_int(value: object, name: str, lo: int, hi: int) -> int:
    if type(value) is not int:  # bool is an int subclass; it is not a valid id or count
        raise ValueError(f"{name} must be an int, got {type(value).__name__}")
    if not lo <= value <= hi:
        raise ValueError(f"{name} must be in [{lo}, {hi}], got {value}")
    return value


def _check_text(value: object, name: str, max_chars: int) -> str:
    if type(value) is not str:
        raise ValueError(f"{name} must be a str, got {type(value).__name__}")
    if len(value) > max_chars:
        raise ValueError(f"{name} is longer than {max_chars} characters ({len(value)})")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"{name} is not encodable as UTF-8: {exc.reason}") from None
    return value


@dataclass(frozen=True)
class Hello:
    """A node introduces itself to a neighbour.

    ``version`` is the sender's p2pfl version (informational: compatibility of the
    encoding itself is the header's protocol version); ``fingerprint`` is
    :meth:`p2pfl.params.ParamLayout.fingerprint` and ``param_count`` the length of
    its parameter vector, so both ends can check they hold the same model.
    """

    sender: int
    version: str
    fingerprint: str
    param_count: int
    round: int

    def __post_init__(self) -> None:
        _check_int(self.sender, "Hello.sender", 0, MAX_SENDER)
        _check_text(self.version, "Hello.version", MAX_VERSION_CHARS)
        _check_text(self.fingerprint, "Hello.fingerprint", MAX_FINGERPRINT_CHARS)
        _check_int(self.param_count, "Hello.param_count", 0, MAX_PARAM_COUNT)
        _check_int(self.round, "Hello.round", 0, MAX_ROUND)


@dataclass(frozen=True)
class Alive:
    """A heartbeat: the sender is running, in round ``round`` (0: still starting).

    Sent to every neighbour every ``network.heartbeat_interval`` and whenever the
    sender enters a new round, on the same ordered channel as its vectors, so a
    receiver learns that a neighbour is alive (not dead), where it is (slow, or
    behind), and, from the order, that a vector of an earlier round was sent
    before. ``greeted`` says whether the sender has the receiver's hello: if not,
    the receiver says hello again (a lost hello costs one heartbeat interval).
    ``wait_ms`` is how long, at most, the sender will still wait for its own
    neighbours (its start-up or the round's collection; 0 while it trains), so a
    neighbour waiting for it knows how much longer a delay it is not to blame for.
    """

    sender: int
    round: int
    greeted: bool
    wait_ms: int = 0

    def __post_init__(self) -> None:
        _check_int(self.sender, "Alive.sender", 0, MAX_SENDER)
        _check_int(self.round, "Alive.round", 0, MAX_ROUND)
        _check_int(self.wait_ms, "Alive.wait_ms", 0, MAX_WAIT_MS)
        if type(self.greeted) is not bool:
            raise ValueError(f"Alive.greeted must be a bool, got {type(self.greeted).__name__}")


@dataclass(
    frozen=True, eq=False
)  # eq=False: comparing tensors elementwise has no single truth value
class Params:
    """A node's parameter vector for a round (usually float32, shape ``(d,)``)."""

    sender: int
    round: int
    vector: torch.Tensor

    def __post_init__(self) -> None:
        _check_int(self.sender, "Params.sender", 0, MAX_SENDER)
        _check_int(self.round, "Params.round", 0, MAX_ROUND)
        if not isinstance(self.vector, torch.Tensor):
            raise ValueError(
                f"Params.vector must be a torch.Tensor, got {type(self.vector).__name__}"
            )
        if self.vector.dtype not in _DTYPE_NAMES:
            raise ValueError(
                f"Params.vector has dtype {self.vector.dtype}; allowed: {', '.join(DTYPES)}"
            )
        if self.vector.ndim > MAX_NDIM:
            raise ValueError(f"Params.vector has {self.vector.ndim} dimensions; at most {MAX_NDIM}")


@dataclass(frozen=True)
class Bye:
    """A node leaves; ``reason`` is a short human-readable label."""

    sender: int
    reason: str

    def __post_init__(self) -> None:
        _check_int(self.sender, "Bye.sender", 0, MAX_SENDER)
        _check_text(self.reason, "Bye.reason", MAX_REASON_CHARS)


@dataclass(frozen=True, eq=False)
class Packed:
    """A compressed vector for a round: a :class:`~p2pfl.compression.SparsePayload` or
    :class:`~p2pfl.compression.QuantPayload` (dense ones travel as :class:`Params`)."""

    sender: int
    round: int
    payload: SparsePayload | QuantPayload

    def __post_init__(self) -> None:
        _check_int(self.sender, "Packed.sender", 0, MAX_SENDER)
        _check_int(self.round, "Packed.round", 0, MAX_ROUND)
        p = self.payload
        if isinstance(p, SparsePayload):
            _check_int(p.length, "SparsePayload.length", 0, MAX_DIM)
            if p.indices.dtype != torch.int32 or p.values.dtype != torch.float32:
                raise ValueError("SparsePayload needs int32 indices and float32 values")
            if p.indices.ndim != 1 or p.indices.shape != p.values.shape:
                raise ValueError("SparsePayload indices and values must be (k,) each")
        elif isinstance(p, QuantPayload):
            _check_int(p.block, "QuantPayload.block", 1, MAX_DIM)
            _check_int(p.levels, "QuantPayload.levels", 1, MAX_LEVELS)
            if p.codes.dtype != torch.int8 or p.scales.dtype != torch.float32:
                raise ValueError("QuantPayload needs int8 codes and float32 scales")
            if p.codes.ndim != 1 or p.scales.shape != (-(-p.length // p.block),):
                raise ValueError("QuantPayload needs (d,) codes and ceil(d / block) scales")
        else:
            raise ValueError(f"Packed.payload must be sparse or quantized, got {type(p).__name__}")


Message: TypeAlias = Hello | Alive | Params | Packed | Bye


def vector_message(sender: int, round_: int, payload: Payload) -> Params | Packed:
    """The message carrying ``payload``: :class:`Params` for a dense one, else :class:`Packed`."""
    if isinstance(payload, DensePayload):
        return Params(sender, round_, payload.values)
    return Packed(sender, round_, payload)


def payload_of(message: Params | Packed) -> Payload:
    """The payload a vector message carries (the inverse of :func:`vector_message`)."""
    if isinstance(message, Params):
        return DensePayload(message.vector.reshape(-1))
    return message.payload


def encoded_nbytes(frames: Sequence[Frame]) -> int:
    """Bytes of an encoded message on the wire: header plus payload, as :func:`encode` made them."""
    return sum(
        f.buffer.nbytes if isinstance(f, zmq.Frame) else memoryview(f).nbytes for f in frames
    )


_COMMON_KEYS = frozenset({"v", "kind", "sender"})
_KIND_KEYS: Mapping[str, frozenset[str]] = {
    "hello": _COMMON_KEYS | {"round", "version", "fingerprint", "param_count"},
    "alive": _COMMON_KEYS | {"round", "greeted", "wait_ms"},
    "params": _COMMON_KEYS | {"round", "dtype", "shape", "nbytes", "xxh3"},
    "sparse": _COMMON_KEYS | {"round", "length", "count", "nbytes", "xxh3"},
    "quant": _COMMON_KEYS | {"round", "length", "block", "levels", "nbytes", "xxh3"},
    "bye": _COMMON_KEYS | {"reason"},
}
_KIND_FRAMES = {"hello": 1, "alive": 1, "params": 2, "sparse": 2, "quant": 2, "bye": 1}


# ----------------------------------------------------------------------------- encode


def _payload(vector: torch.Tensor) -> memoryview:
    """The tensor's bytes, C order, little-endian: a view when it already is, else one copy."""
    t = vector.detach()
    if t.device.type != "cpu":
        t = t.cpu()
    flat = t.contiguous().reshape(-1).view(torch.uint8)  # view(uint8) reinterprets, any dtype
    array = flat.numpy()
    if not _LITTLE:  # pragma: no cover - no big-endian CI machine
        array = array.reshape(-1, vector.element_size())[:, ::-1].copy().reshape(-1)
    return array.data


def _packed_payload(payload: SparsePayload | QuantPayload) -> memoryview:
    """The one payload frame of a compressed vector (see the module docstring)."""
    if isinstance(payload, SparsePayload):
        parts = (payload.indices, payload.values)
    else:
        parts = (payload.scales, payload.codes)
    return memoryview(b"".join(_payload(t) for t in parts))


def _packed_header(message: Packed, payload: memoryview) -> dict[str, Any]:
    p = message.payload
    header: dict[str, Any] = {
        "v": PROTOCOL_VERSION,
        "sender": message.sender,
        "round": message.round,
    }
    if isinstance(p, SparsePayload):
        header.update(kind="sparse", length=p.length, count=int(p.indices.numel()))
    else:
        header.update(kind="quant", length=p.length, block=p.block, levels=p.levels)
    header.update(nbytes=payload.nbytes, xxh3=xxhash.xxh3_64_intdigest(payload))
    return header


def encode(message: Message) -> list[bytes | memoryview]:
    """The frames of ``message``: ``[header]``, or ``[header, payload]`` for :class:`Params`.

    The payload is a view of ``message.vector`` (see the module docstring): do not
    modify that tensor in place afterwards.
    """
    if isinstance(message, Hello):
        header: dict[str, Any] = {
            "v": PROTOCOL_VERSION,
            "kind": "hello",
            "sender": message.sender,
            "round": message.round,
            "version": message.version,
            "fingerprint": message.fingerprint,
            "param_count": message.param_count,
        }
        return [msgpack.packb(header)]
    if isinstance(message, Alive):
        header = {
            "v": PROTOCOL_VERSION,
            "kind": "alive",
            "sender": message.sender,
            "round": message.round,
            "greeted": message.greeted,
            "wait_ms": message.wait_ms,
        }
        return [msgpack.packb(header)]
    if isinstance(message, Params):
        payload = _payload(message.vector)
        header = {
            "v": PROTOCOL_VERSION,
            "kind": "params",
            "sender": message.sender,
            "round": message.round,
            "dtype": _DTYPE_NAMES[message.vector.dtype],
            "shape": list(message.vector.shape),
            "nbytes": payload.nbytes,
            "xxh3": xxhash.xxh3_64_intdigest(payload),
        }
        return [msgpack.packb(header), payload]
    if isinstance(message, Packed):
        packed = _packed_payload(message.payload)
        return [msgpack.packb(_packed_header(message, packed)), packed]
    if isinstance(message, Bye):
        header = {
            "v": PROTOCOL_VERSION,
            "kind": "bye",
            "sender": message.sender,
            "reason": message.reason,
        }
        return [msgpack.packb(header)]
    raise ValueError(
        f"cannot encode {type(message).__name__}; expected Hello, Alive, Params, Packed or Bye"
    )


# ----------------------------------------------------------------------------- decode


def _bytes_view(frame: object, index: int) -> memoryview:
    """A flat byte view of a frame without copying it."""
    try:
        view = frame.buffer if isinstance(frame, zmq.Frame) else memoryview(frame)  # type: ignore[arg-type]
    except TypeError:
        raise DecodeError(f"frame {index} is not bytes-like ({type(frame).__name__})") from None
    if view.format == "B" and view.ndim == 1:
        return view
    try:
        return view.cast("B")  # also rejects non-contiguous views
    except TypeError:
        raise DecodeError(f"frame {index} is not a contiguous buffer") from None


def _unpack_header(view: memoryview) -> dict[str, Any]:
    if view.nbytes > MAX_HEADER_BYTES:
        raise DecodeError(f"header has {view.nbytes} bytes; at most {MAX_HEADER_BYTES}")
    try:
        header = msgpack.unpackb(
            view,
            raw=False,
            strict_map_key=True,
            use_list=True,
            max_str_len=MAX_HEADER_BYTES,
            max_bin_len=0,
            max_array_len=MAX_NDIM,
            max_map_len=16,
            max_ext_len=0,
        )
    except Exception as exc:  # msgpack raises several ValueError/TypeError kinds; all mean "bad"
        raise DecodeError(f"header is not valid msgpack: {exc}") from None
    if not isinstance(header, dict):
        raise DecodeError(f"header is not a map (got {type(header).__name__})")
    return header


def _field_int(header: Mapping[str, Any], key: str, lo: int, hi: int) -> int:
    value = header[key]
    if type(value) is not int:
        raise DecodeError(f"header field {key!r} must be an int, got {type(value).__name__}")
    if not lo <= value <= hi:
        raise DecodeError(f"header field {key!r} must be in [{lo}, {hi}], got {value}")
    return value


def _field_str(header: Mapping[str, Any], key: str, max_chars: int) -> str:
    value = header[key]
    if type(value) is not str:
        raise DecodeError(f"header field {key!r} must be a str, got {type(value).__name__}")
    if len(value) > max_chars:
        raise DecodeError(f"header field {key!r} is longer than {max_chars} characters")
    return value


def _check_kind(header: Mapping[str, Any], frame_count: int) -> str:
    if "v" not in header:
        raise DecodeError("header has no protocol version 'v'")
    version = header["v"]
    if type(version) is not int:
        raise DecodeError(f"protocol version must be an int, got {type(version).__name__}")
    if version != PROTOCOL_VERSION:
        raise DecodeError(
            f"unsupported protocol version {version} (this node speaks {PROTOCOL_VERSION})"
        )
    if "kind" not in header:
        raise DecodeError("header has no message 'kind'")
    kind = header["kind"]
    if type(kind) is not str or kind not in _KIND_KEYS:
        raise DecodeError(f"unknown message kind {kind!r}; known: {', '.join(sorted(_KIND_KEYS))}")
    keys = set(header)
    missing = _KIND_KEYS[kind] - keys
    if missing:
        raise DecodeError(f"{kind} header is missing keys: {', '.join(sorted(missing))}")
    extra = keys - _KIND_KEYS[kind]
    if extra:
        raise DecodeError(f"{kind} header has unexpected keys: {', '.join(sorted(extra))}")
    if frame_count != _KIND_FRAMES[kind]:
        raise DecodeError(f"{kind} message needs {_KIND_FRAMES[kind]} frame(s), got {frame_count}")
    return kind


def _shape(header: Mapping[str, Any]) -> tuple[int, ...]:
    shape = header["shape"]
    if not isinstance(shape, list):
        raise DecodeError(f"header field 'shape' must be a list, got {type(shape).__name__}")
    for dim in shape:
        if type(dim) is not int:
            raise DecodeError(f"shape {shape} has a non-int dimension")
        if not 0 <= dim <= MAX_DIM:
            raise DecodeError(f"shape {shape} has a dimension outside [0, {MAX_DIM}]")
    return tuple(shape)


def _address(view: memoryview) -> int:
    return int(np.frombuffer(view, dtype=np.uint8).ctypes.data)


def _tensor(
    payload: memoryview, dtype: torch.dtype, shape: tuple[int, ...], copy: bool
) -> torch.Tensor:
    itemsize = torch.empty((), dtype=dtype).element_size()
    if payload.nbytes == 0:
        return torch.empty(shape, dtype=dtype)
    if copy or payload.readonly or _address(payload) % itemsize or not _LITTLE:
        out = torch.empty(payload.nbytes // itemsize, dtype=dtype)
        raw = out.view(torch.uint8).numpy()
        raw[:] = np.frombuffer(payload, dtype=np.uint8)
        if not _LITTLE:  # pragma: no cover - no big-endian CI machine
            raw.reshape(-1, itemsize)[:] = raw.reshape(-1, itemsize)[:, ::-1].copy()
    else:
        out = torch.frombuffer(payload, dtype=dtype)  # shares memory and keeps the frame alive
    return out.reshape(shape)


def _decode_params(
    header: Mapping[str, Any], payload: memoryview, max_payload_bytes: int, copy: bool
) -> Params:
    dtype_name = header["dtype"]
    if type(dtype_name) is not str or dtype_name not in DTYPES:
        raise DecodeError(f"dtype {dtype_name!r} is not allowed; allowed: {', '.join(DTYPES)}")
    dtype = DTYPES[dtype_name]
    shape = _shape(header)
    nbytes = _field_int(header, "nbytes", 0, 2**63 - 1)
    if nbytes > max_payload_bytes:
        raise DecodeError(f"payload of {nbytes} bytes exceeds the limit of {max_payload_bytes}")
    expected = math.prod(shape) * torch.empty((), dtype=dtype).element_size()
    if expected != nbytes:
        raise DecodeError(
            f"shape {list(shape)} of {dtype_name} needs {expected} bytes, header says {nbytes}"
        )
    if payload.nbytes != nbytes:
        raise DecodeError(f"payload frame has {payload.nbytes} bytes, header says {nbytes}")
    digest = _field_int(header, "xxh3", 0, 2**64 - 1)
    if xxhash.xxh3_64_intdigest(payload) != digest:
        raise DecodeError("payload checksum mismatch (xxh3)")
    return Params(
        sender=_field_int(header, "sender", 0, MAX_SENDER),
        round=_field_int(header, "round", 0, MAX_ROUND),
        vector=_tensor(payload, dtype, shape, copy),
    )


def _array(payload: memoryview, start: int, count: int, dtype: torch.dtype) -> torch.Tensor:
    """``count`` values of ``dtype`` at byte ``start`` of ``payload``, copied."""
    itemsize = torch.empty((), dtype=dtype).element_size()
    return _tensor(payload[start : start + count * itemsize], dtype, (count,), copy=True)


def _decode_packed(
    kind: str, header: Mapping[str, Any], payload: memoryview, max_payload_bytes: int
) -> Packed:
    length = _field_int(header, "length", 0, MAX_DIM)
    nbytes = _field_int(header, "nbytes", 0, 2**63 - 1)
    if nbytes > max_payload_bytes:
        raise DecodeError(f"payload of {nbytes} bytes exceeds the limit of {max_payload_bytes}")
    if kind == "sparse":
        count = _field_int(header, "count", 0, length)
        expected = 8 * count
    else:
        block = _field_int(header, "block", 1, MAX_DIM)
        levels = _field_int(header, "levels", 1, MAX_LEVELS)
        blocks = -(-length // block)
        expected = 4 * blocks + length
    if expected != nbytes:
        raise DecodeError(
            f"{kind} vector of these sizes needs {expected} bytes, header says {nbytes}"
        )
    if payload.nbytes != nbytes:
        raise DecodeError(f"payload frame has {payload.nbytes} bytes, header says {nbytes}")
    digest = _field_int(header, "xxh3", 0, 2**64 - 1)
    if xxhash.xxh3_64_intdigest(payload) != digest:
        raise DecodeError("payload checksum mismatch (xxh3)")
    packed: SparsePayload | QuantPayload
    if kind == "sparse":
        packed = SparsePayload(
            length,
            _array(payload, 0, count, torch.int32),
            _array(payload, 4 * count, count, torch.float32),
        )
    else:
        packed = QuantPayload(
            block,
            levels,
            _array(payload, 0, blocks, torch.float32),
            _array(payload, 4 * blocks, length, torch.int8),
        )
    return Packed(
        sender=_field_int(header, "sender", 0, MAX_SENDER),
        round=_field_int(header, "round", 0, MAX_ROUND),
        payload=packed,
    )


def decode(
    frames: Sequence[Frame],
    *,
    max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
    copy: bool = False,
) -> Message:
    """The message in ``frames``; :class:`~p2pfl.errors.DecodeError` if they are not one.

    ``max_payload_bytes`` bounds the tensor payload (a node passes ``4 * d``);
    ``copy=True`` makes ``Params.vector`` own its memory instead of viewing the frame.
    """
    if type(max_payload_bytes) is not int or max_payload_bytes < 0:
        raise ValueError(f"max_payload_bytes must be a non-negative int, got {max_payload_bytes!r}")
    if not isinstance(frames, Sequence):
        raise DecodeError(f"frames must be a sequence, got {type(frames).__name__}")
    count = len(frames)
    if count not in (1, 2):
        raise DecodeError(f"expected 1 or 2 frames, got {count}")
    header = _unpack_header(_bytes_view(frames[0], 0))
    kind = _check_kind(header, count)
    sender = _field_int(header, "sender", 0, MAX_SENDER)
    if kind == "params":
        return _decode_params(header, _bytes_view(frames[1], 1), max_payload_bytes, copy)
    if kind in ("sparse", "quant"):
        return _decode_packed(kind, header, _bytes_view(frames[1], 1), max_payload_bytes)
    if kind == "hello":
        return Hello(
            sender=sender,
            version=_field_str(header, "version", MAX_VERSION_CHARS),
            fingerprint=_field_str(header, "fingerprint", MAX_FINGERPRINT_CHARS),
            param_count=_field_int(header, "param_count", 0, MAX_PARAM_COUNT),
            round=_field_int(header, "round", 0, MAX_ROUND),
        )
    if kind == "alive":
        greeted = header["greeted"]
        if type(greeted) is not bool:
            raise DecodeError(
                f"header field 'greeted' must be a bool, got {type(greeted).__name__}"
            )
        return Alive(
            sender=sender,
            round=_field_int(header, "round", 0, MAX_ROUND),
            greeted=greeted,
            wait_ms=_field_int(header, "wait_ms", 0, MAX_WAIT_MS),
        )
    return Bye(sender=sender, reason=_field_str(header, "reason", MAX_REASON_CHARS))
