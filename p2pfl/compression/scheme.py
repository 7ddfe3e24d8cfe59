"""How a node sends its vector compressed, and what a receiver does with it: two schemes.

``direct`` (send the compressed model)
    Node ``i`` sends ``C(x_i)`` and its neighbours aggregate the decoded vectors
    with their own (uncompressed) one. With error feedback (Seide et al. 2014;
    Karimireddy et al., ICML 2019) it keeps the residual: ``p = x_i + e_i``,
    send ``C(p)``, ``e_i <- p - C(p)``, so what one round drops is sent later.

``choco`` (CHOCO-SGD, Koloskova, Stich & Jaggi, ICML 2019, Algorithm 1 of the paper)
    Every node keeps *public copies* ``xhat_j`` of itself and each neighbour, the
    same on both ends of an edge. Each round, after local training (``x_i'``)::

        q_i = C(x_i' - xhat_i)                      (sent to every neighbour)
        xhat_j <- xhat_j + q_j                       (i itself and every neighbour j)
        x_i <- x_i' + gamma * (A(xhat_i; xhat_j) - xhat_i)

    With ``A`` the mixing-weight average ``sum_j W_ij xhat_j`` this is the paper's
    consensus step ``gamma * sum_j W_ij (xhat_j - xhat_i)``; a robust rule ``A``
    works on the decoded public copies instead (:func:`choco_step`).

Both are pure functions on tensors, called by the simulator for every node and by
a node process for itself, so both compute the same numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from p2pfl.compression.operators import Compressor
from p2pfl.compression.payload import Encoding, Payload, decompress

__all__ = ["CompressionSpec", "choco_message", "choco_step", "direct_message"]


@dataclass(frozen=True)
class CompressionSpec:
    """A run's compression: operator, scheme, error feedback, CHOCO's consensus step."""

    compressor: Compressor
    scheme: Literal["direct", "choco"] = "direct"
    error_feedback: bool = False
    gamma: float = 1.0

    @property
    def active(self) -> bool:
        """Whether anything differs from sending the float32 vector as it is."""
        return self.scheme == "choco" or not self.compressor.is_identity

    def encoding(self, d: int) -> Encoding:
        return self.compressor.encoding(d)


def direct_message(
    x: torch.Tensor,
    error: torch.Tensor | None,
    spec: CompressionSpec,
    generator: torch.Generator,
) -> tuple[Payload, torch.Tensor, torch.Tensor | None]:
    """``(payload, decoded, new_error)`` of the direct scheme for vector ``x`` (d,).

    ``decoded`` is what every receiver decodes; ``new_error`` is the residual
    ``p - C(p)`` with error feedback (``error`` None counts as zero), else None.
    """
    p = x + error if spec.error_feedback and error is not None else x
    payload = spec.compressor.compress(p, generator)
    decoded = decompress(payload)
    return payload, decoded, (p - decoded) if spec.error_feedback else None


def choco_message(
    x: torch.Tensor, hat: torch.Tensor, spec: CompressionSpec, generator: torch.Generator
) -> tuple[Payload, torch.Tensor]:
    """``(payload, q)``: CHOCO's ``q = C(x - xhat)`` for public copy ``hat``; the caller
    adds the decoded ``q`` to its copy (and every receiver to theirs)."""
    payload = spec.compressor.compress(x - hat, generator)
    return payload, decompress(payload)


def choco_step(
    trained: torch.Tensor, combined: torch.Tensor, hat_self: torch.Tensor, gamma: float
) -> torch.Tensor:
    """CHOCO's consensus step ``x' + gamma * (A - xhat_i)`` (any batch shape)."""
    return trained + gamma * (combined - hat_self)
