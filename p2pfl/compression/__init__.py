"""Compressed communication: operators, payloads and the direct and CHOCO schemes.

:mod:`~p2pfl.compression.operators` holds the operators (``none``, ``top_k``,
``random_k``, ``qsgd``, ``int8``, ``fp16``, ``bf16``) registered in
:data:`COMPRESSORS`; :mod:`~p2pfl.compression.payload` what they produce, as the
wire carries it; :mod:`~p2pfl.compression.scheme` how a round uses them.
"""

from p2pfl.compression.operators import (
    COMPRESSION_STREAM,
    COMPRESSORS,
    Compressor,
    compression_generator,
    make_compressor,
)
from p2pfl.compression.payload import (
    DensePayload,
    Encoding,
    Payload,
    QuantPayload,
    SparsePayload,
    decompress,
    payload_finite,
    payload_nbytes,
)
from p2pfl.compression.scheme import CompressionSpec, choco_message, choco_step, direct_message

__all__ = [
    "COMPRESSION_STREAM",
    "COMPRESSORS",
    "CompressionSpec",
    "Compressor",
    "DensePayload",
    "Encoding",
    "Payload",
    "QuantPayload",
    "SparsePayload",
    "choco_message",
    "choco_step",
    "compression_generator",
    "decompress",
    "direct_message",
    "make_compressor",
    "payload_finite",
    "payload_nbytes",
]
