"""What a compressed vector is on the wire: three payload shapes and their receiver's expectation.

Every compression operator (:mod:`p2pfl.compression.operators`) returns one of

=====================  ===========================================  =====================
payload                holds                                        bytes (payload only)
=====================  ===========================================  =====================
:class:`DensePayload`  ``values`` (d,) float32, float16 or bfloat16  ``d * itemsize``
:class:`SparsePayload` ``indices`` (k,) int32, strictly increasing,   ``8 k``
                       and ``values`` (k,) float32
:class:`QuantPayload`  ``scales`` (ceil(d / block),) float32 and      ``4 ceil(d / block) + d``
                       ``codes`` (d,) int8 with ``|code| <= levels``
=====================  ===========================================  =====================

and :func:`decompress` turns any of them back into a float32 ``(d,)`` vector
(a quantized coordinate is ``codes[j] * scales[j // block]``). The sizes depend
only on the operator and ``d``, never on the vector, so a receiver knows exactly
what a neighbour's message must look like: :meth:`Encoding.of` a payload is that
expectation, and :mod:`p2pfl.validation` refuses anything else.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, TypeAlias

import torch

__all__ = [
    "DENSE_DTYPES",
    "DensePayload",
    "Encoding",
    "Payload",
    "QuantPayload",
    "SparsePayload",
    "decompress",
    "payload_finite",
    "payload_nbytes",
]

#: Value dtypes of a dense payload.
DENSE_DTYPES = (torch.float32, torch.float16, torch.bfloat16)

#: The largest ``levels`` of a quantized payload: codes are int8, and -128 is never used.
MAX_LEVELS = 127


@dataclass(frozen=True, eq=False)
class DensePayload:
    """Every coordinate, in float32 or half precision."""

    values: torch.Tensor  # (d,)

    @property
    def length(self) -> int:
        return int(self.values.numel())


@dataclass(frozen=True, eq=False)
class SparsePayload:
    """``k`` of ``length`` coordinates: ``x[indices] = values``, the others zero."""

    length: int
    indices: torch.Tensor  # (k,) int32, strictly increasing, in [0, length)
    values: torch.Tensor  # (k,) float32


@dataclass(frozen=True, eq=False)
class QuantPayload:
    """Per-block scaled int8 codes: ``x[j] = codes[j] * scales[j // block]``."""

    block: int
    levels: int  # every |code| <= levels
    scales: torch.Tensor  # (ceil(d / block),) float32, >= 0
    codes: torch.Tensor  # (d,) int8

    @property
    def length(self) -> int:
        return int(self.codes.numel())


Payload: TypeAlias = DensePayload | SparsePayload | QuantPayload


def payload_finite(payload: Payload) -> bool:
    """Whether every value the payload stands for is finite, without decompressing it.

    Dense and sparse: every value finite. Quantized: every scale finite and
    ``levels * scale`` too, so that any code within ``levels`` decodes to a finite value
    (a finite scale near float32's maximum still overflows once multiplied). The node's
    boundary (:mod:`p2pfl.validation`) and the simulator drop exactly the same messages.
    """
    if isinstance(payload, QuantPayload):
        return bool(torch.isfinite(payload.scales * payload.levels).all())
    return bool(torch.isfinite(payload.values).all())


def decompress(payload: Payload) -> torch.Tensor:
    """The float32 ``(d,)`` vector a payload stands for (a new tensor)."""
    if isinstance(payload, DensePayload):
        return payload.values.to(torch.float32).clone()
    if isinstance(payload, SparsePayload):
        out = torch.zeros(payload.length, dtype=torch.float32)
        out[payload.indices.to(torch.int64)] = payload.values.to(torch.float32)
        return out
    d = payload.length
    scale = payload.scales.repeat_interleave(payload.block)[:d]
    return payload.codes.to(torch.float32) * scale


@dataclass(frozen=True)
class Encoding:
    """The shape of every payload of one operator on ``length`` coordinates.

    ``dtype`` (dense), ``count`` (sparse) and ``block``/``levels`` (quant) are the
    fields that kind uses; the others stay at their defaults.
    """

    kind: Literal["dense", "sparse", "quant"]
    length: int
    dtype: torch.dtype = torch.float32
    count: int = 0
    block: int = 0
    levels: int = 0

    @classmethod
    def of(cls, payload: Payload) -> Encoding:
        if isinstance(payload, DensePayload):
            return cls("dense", payload.length, dtype=payload.values.dtype)
        if isinstance(payload, SparsePayload):
            return cls("sparse", payload.length, count=int(payload.indices.numel()))
        return cls("quant", payload.length, block=payload.block, levels=payload.levels)

    @property
    def payload_bytes(self) -> int:
        """Bytes of the payload frame of every message of this encoding."""
        if self.kind == "dense":
            return self.length * torch.empty((), dtype=self.dtype).element_size()
        if self.kind == "sparse":
            return 8 * self.count
        return 4 * math.ceil(self.length / max(self.block, 1)) + self.length


def payload_nbytes(payload: Payload) -> int:
    """Bytes of ``payload``'s frame on the wire (:attr:`Encoding.payload_bytes`)."""
    return Encoding.of(payload).payload_bytes
