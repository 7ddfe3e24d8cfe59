"""What a node aggregates: its own vector, its neighbours' vectors, its mixing weights."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor


@dataclass(frozen=True)
class Neighbourhood:
    """The inputs of one aggregation step, for a batch of ``b`` nodes at once.

    ``own`` ``(b, d)`` is each node's vector after local training; ``received``
    ``(b, m, d)`` its neighbours' vectors in increasing sender-id order;
    ``weights`` ``(b, m + 1)`` its mixing weights, column 0 for itself and then in
    ``received`` order; ``f`` the number of Byzantine inputs to tolerate.
    ``byzantine`` ``(b, m)`` bool, optional, marks the received vectors that come
    from Byzantine senders: an oracle only a simulator has (ClippedGossip's
    theorem radius uses it); ``None`` in a deployment.

    Shapes are checked on construction (cheap: no pass over the data).
    :meth:`of_stacked` builds one from vectors already stacked own-first, which
    :meth:`stacked` then returns without a copy.
    """

    own: Tensor
    received: Tensor
    weights: Tensor
    f: int
    _stacked: Tensor | None = field(default=None, repr=False, compare=False)
    byzantine: Tensor | None = field(default=None, repr=False, compare=False)

    @classmethod
    def of_stacked(
        cls, vectors: Tensor, weights: Tensor, f: int, byzantine: Tensor | None = None
    ) -> Neighbourhood:
        """From ``(b, m + 1, d)`` vectors, each node's own first."""
        if not isinstance(vectors, Tensor) or vectors.ndim != 3 or vectors.shape[1] < 1:
            shape = tuple(vectors.shape) if isinstance(vectors, Tensor) else vectors
            raise ValueError(f"Neighbourhood.of_stacked: expected shape (b, m + 1, d), got {shape}")
        return cls(vectors[:, 0], vectors[:, 1:], weights, f, vectors, byzantine)

    def __post_init__(self) -> None:
        for name in ("own", "received", "weights"):
            value = getattr(self, name)
            if not isinstance(value, Tensor):
                raise ValueError(f"Neighbourhood.{name}: expected a torch.Tensor, got {value!r}")
            if not value.is_floating_point():
                raise ValueError(
                    f"Neighbourhood.{name}: expected a float tensor, got {value.dtype}"
                )
        if self.own.ndim != 2:
            raise ValueError(
                f"Neighbourhood.own: expected shape (b, d), got {tuple(self.own.shape)}"
            )
        b, d = self.own.shape
        if self.received.ndim != 3 or self.received.shape[0] != b or self.received.shape[2] != d:
            raise ValueError(
                f"Neighbourhood.received: expected shape ({b}, m, {d}), "
                f"got {tuple(self.received.shape)}"
            )
        if self.received.dtype != self.own.dtype:
            raise ValueError(
                f"Neighbourhood.received: dtype {self.received.dtype} differs from own's "
                f"{self.own.dtype}"
            )
        m = self.received.shape[1]
        if tuple(self.weights.shape) != (b, m + 1):
            raise ValueError(
                f"Neighbourhood.weights: expected shape ({b}, {m + 1}) (self, then each "
                f"received vector), got {tuple(self.weights.shape)}"
            )
        if isinstance(self.f, bool) or not isinstance(self.f, int) or self.f < 0:
            raise ValueError(f"Neighbourhood.f: expected an integer >= 0, got {self.f!r}")
        if self.byzantine is not None and (
            not isinstance(self.byzantine, Tensor)
            or self.byzantine.dtype != torch.bool
            or tuple(self.byzantine.shape) != (b, m)
        ):
            raise ValueError(f"Neighbourhood.byzantine: expected a ({b}, {m}) bool tensor or None")

    @property
    def n(self) -> int:
        """Vectors per node, own included."""
        return int(self.received.shape[1]) + 1

    def stacked(self) -> Tensor:
        """``(b, m + 1, d)``: own first, then the received vectors."""
        if self._stacked is not None:
            return self._stacked
        return torch.cat([self.own.unsqueeze(1), self.received], dim=1)
