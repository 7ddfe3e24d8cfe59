"""The model registry, ``MODELS``: ``logreg``, ``mlp`` and ``cnn``."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from p2pfl.models.zoo import cnn, logreg, mlp
from p2pfl.registry import Registry

ModelFactory = Callable[..., nn.Module]

MODELS: Registry[ModelFactory] = Registry(
    "model", {"logreg": logreg, "mlp": mlp, "cnn": cnn}, key="model.name", importable=True
)
