"""Inbound size limit derived from what a node receives: one place computes it.

The largest message a node accepts is one :class:`~p2pfl.wire.Params` carrying its
model's vector: a header frame of at most :data:`p2pfl.wire.MAX_HEADER_BYTES` and a
payload frame of the vector's bytes (``4 * d`` for ``d`` float32 parameters).
ZeroMQ's ``MAXMSGSIZE`` (:attr:`TransportOptions.max_message_bytes`) applies per
frame, to handshake frames too, before a byte of the frame is kept; so a
model-sized limit bounds what any single frame, authenticated or not, can make
libzmq allocate. Per connection, :mod:`p2pfl.transport.guard` bounds the rest.

    >>> inbound_frame_limit(4 * 2_410)     # a 2,410-parameter float32 model
    17832
"""

from __future__ import annotations

from p2pfl.errors import ConfigError
from p2pfl.wire import MAX_HEADER_BYTES

__all__ = ["FRAME_ALLOWANCE_BYTES", "inbound_frame_limit"]

#: Room above the largest legitimate frame (one more header's worth): a message a
#: byte too long still reaches the node, which refuses and counts it (``oversized``).
FRAME_ALLOWANCE_BYTES = 4096


def inbound_frame_limit(
    payload_bytes: int, *, cap_bytes: int | None = None, cap_name: str = "cap_bytes"
) -> int:
    """The largest frame a node should accept: ``payload_bytes + MAX_HEADER_BYTES + 4096``.

    ``payload_bytes`` is the largest payload of any message the node expects (the
    model vector's bytes; pass the real budget, e.g. ``tensor.nbytes``, so another
    dtype or payload kind needs no change here). ``cap_bytes`` is an operator's
    upper bound (``network.max_message_mb``): a model whose messages do not fit
    under it is a :class:`~p2pfl.errors.ConfigError` naming ``cap_name``, instead
    of a node that silently drops every vector.
    """
    if type(payload_bytes) is not int or payload_bytes < 0:
        raise ValueError(f"payload_bytes must be a non-negative int, got {payload_bytes!r}")
    limit = payload_bytes + MAX_HEADER_BYTES + FRAME_ALLOWANCE_BYTES
    if cap_bytes is not None and limit > cap_bytes:
        raise ConfigError(
            f"{cap_name}: the model's messages need frames of up to {limit} bytes "
            f"({limit / 2**20:.3g} MiB: {payload_bytes} bytes of vector plus header), "
            f"above the cap of {cap_bytes} bytes; raise it"
        )
    return limit
