"""A model's parameters and buffers as one flat float32 vector, and back.

The flat vector is what nodes exchange and what aggregation rules combine. A
:class:`ParamLayout` records, for each named tensor of a ``state_dict``, its shape,
dtype and position, so :func:`unflatten` restores the exact ``state_dict``
(integer buffers such as BatchNorm's ``num_batches_tracked`` included: they are
carried as float32, exact up to 2**24). Its :meth:`ParamLayout.fingerprint` lets
two nodes check that they hold the same architecture before exchanging vectors.

Frozen entries (:func:`frozen_names`: parameters with ``requires_grad = False``,
and the buffers of modules whose own parameters are all frozen) can be left out
of a layout (``ParamLayout.of(model, exclude=...)``): the *shared* layout is what
nodes train and exchange, the frozen entries stay constant in every node.
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
    def of(cls, model: nn.Module, exclude: frozenset[str] = frozenset()) -> ParamLayout:
        """The layout of ``model``'s ``state_dict``, without the entries named in ``exclude``."""
        trainable = {name for name, p in model.named_parameters() if p.requires_grad}
        slots = []
        offset = 0
        for name, t in model.state_dict().items():
            if name in exclude:
                continue
            slots.append(
                TensorSlot(name, tuple(t.shape), t.dtype, offset, t.numel(), name in trainable)
            )
            offset += t.numel()
        return cls(tuple(slots))


def frozen_names(model: nn.Module) -> frozenset[str]:
    """The ``state_dict`` entries of ``model`` that are frozen.

    A parameter is frozen when its ``requires_grad`` is False; a buffer (BatchNorm's
    running statistics) when the module that owns it has parameters and all of them
    are frozen: freezing a normalization layer's affine parameters freezes its
    statistics with them. Buffers of parameterless modules are never frozen.
    """
    frozen = {name for name, p in model.named_parameters() if not p.requires_grad}
    for prefix, module in model.named_modules():
        own = list(module.named_parameters(recurse=False))
        if own and all(not p.requires_grad for _, p in own):
            dot = f"{prefix}." if prefix else ""
            frozen |= {f"{dot}{b}" for b, _ in module.named_buffers(recurse=False)}
    return frozenset(frozen & set(model.state_dict()))


def flatten(model: nn.Module, exclude: frozenset[str] = frozenset()) -> torch.Tensor:
    """The model's ``state_dict`` (without ``exclude``) as one contiguous float32 vector (a copy)."""
    tensors = [
        t.detach().reshape(-1).to(torch.float32)
        for name, t in model.state_dict().items()
        if name not in exclude
    ]
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
