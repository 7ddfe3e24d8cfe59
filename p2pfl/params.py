"""A model's parameters and buffers as one flat float32 vector, and back.

The flat vector is what nodes exchange and what aggregation rules combine. A
:class:`ParamLayout` records, for each named tensor of a ``state_dict``, its shape,
dtype and position, so :func:`unflatten` restores the exact ``state_dict``
(integer buffers such as BatchNorm's ``num_batches_tracked`` included: they are
carried as float32, exact up to 2**24). Its :meth:`ParamLayout.fingerprint` lets
two nodes check that they hold the same architecture before exchanging vectors.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class TensorSlot:
    """Where one named tensor lives in the flat vector."""

    name: str
    shape: tuple[int, ...]
    dtype: torch.dtype
    offset: int
    numel: int
    trainable: bool


@dataclass(frozen=True)
class ParamLayout:
    """The layout of a flat parameter vector: one slot per ``state_dict`` entry, in order."""

    slots: tuple[TensorSlot, ...]

    @property
    def size(self) -> int:
        return sum(s.numel for s in self.slots)

    @property
    def trainable_mask(self) -> torch.Tensor:
        """Boolean ``(size,)`` mask of the coordinates that belong to trainable parameters."""
        mask = torch.zeros(self.size, dtype=torch.bool)
        for s in self.slots:
            if s.trainable:
                mask[s.offset : s.offset + s.numel] = True
        return mask

    def fingerprint(self) -> str:
        """A short hash of names, shapes and dtypes: equal iff two models are exchange-compatible."""
        h = hashlib.sha256()
        for s in self.slots:
            h.update(f"{s.name}:{s.shape}:{s.dtype};".encode())
        return h.hexdigest()[:16]

    @classmethod
    def of(cls, model: nn.Module) -> ParamLayout:
        trainable = {name for name, p in model.named_parameters() if p.requires_grad}
        slots = []
        offset = 0
        for name, t in model.state_dict().items():
            slots.append(
                TensorSlot(name, tuple(t.shape), t.dtype, offset, t.numel(), name in trainable)
            )
            offset += t.numel()
        return cls(tuple(slots))


def flatten(model: nn.Module) -> torch.Tensor:
    """The model's ``state_dict`` as one contiguous float32 vector (a copy)."""
    tensors = [t.detach().reshape(-1).to(torch.float32) for t in model.state_dict().values()]
    if not tensors:
        return torch.zeros(0)
    return torch.cat(tensors)


def unflatten(vector: torch.Tensor, layout: ParamLayout) -> dict[str, torch.Tensor]:
    """Split a flat vector into a ``state_dict`` with the layout's names, shapes and dtypes."""
    if vector.ndim != 1 or vector.numel() != layout.size:
        raise ValueError(
            f"vector of shape {tuple(vector.shape)} does not match a layout of {layout.size} values"
        )
    out: dict[str, torch.Tensor] = {}
    for s in layout.slots:
        piece = vector[s.offset : s.offset + s.numel].reshape(s.shape)
        if s.dtype.is_floating_point:
            out[s.name] = piece.to(s.dtype)
        else:
            out[s.name] = piece.round().to(s.dtype)
    return out


def load_flat(model: nn.Module, vector: torch.Tensor) -> None:
    """Write a flat vector into ``model`` in place."""
    model.load_state_dict(unflatten(vector, ParamLayout.of(model)))
