"""Small classifiers for the simulator and the nodes: ``logreg``, ``mlp`` and ``cnn``.

Every factory has the signature ``factory(input_shape, num_classes, *, ...) ->
nn.Module`` and returns a module mapping ``(B, *input_shape)`` float32 inputs to
``(B, num_classes)`` logits. None uses BatchNorm or dropout: local training runs
many nodes at once under ``torch.func.vmap``, where running statistics and random
masks would need per-node state.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import nn

from p2pfl.errors import ConfigError


def _check(input_shape: Sequence[int], num_classes: int) -> tuple[int, ...]:
    shape = tuple(input_shape)
    if not shape or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in shape):
        raise ConfigError(f"model: input_shape must be positive integers, got {shape}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ConfigError(f"model: num_classes must be an integer >= 2, got {num_classes!r}")
    return shape


def _widths(values: Sequence[int], key: str) -> list[int]:
    widths = list(values)
    if any(isinstance(w, bool) or not isinstance(w, int) or w < 1 for w in widths):
        raise ConfigError(f"model.params.{key}: sizes must be positive integers, got {widths}")
    return widths


def logreg(input_shape: Sequence[int], num_classes: int) -> nn.Module:
    """Multinomial logistic regression: flatten, then one linear layer."""
    shape = _check(input_shape, num_classes)
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(shape), num_classes))


def mlp(
    input_shape: Sequence[int], num_classes: int, *, hidden: Sequence[int] = (64,)
) -> nn.Module:
    """Flatten, then ``Linear + ReLU`` for each size in ``hidden``, then a linear output layer.

    ``hidden = []`` is logistic regression.
    """
    shape = _check(input_shape, num_classes)
    layers: list[nn.Module] = [nn.Flatten()]
    width = math.prod(shape)
    for h in _widths(hidden, "hidden"):
        layers += [nn.Linear(width, h), nn.ReLU()]
        width = h
    layers.append(nn.Linear(width, num_classes))
    return nn.Sequential(*layers)


def cnn(
    input_shape: Sequence[int], num_classes: int, *, channels: Sequence[int] = (16, 32)
) -> nn.Module:
    """A small convolutional network for ``(C, H, W)`` images.

    One block per entry of ``channels``: a 3x3 convolution (padding 1) and a ReLU,
    followed by 2x2 max pooling while both spatial sizes are at least 2 (8x8 digits:
    8 -> 4 -> 2; 28x28 MNIST: 28 -> 14 -> 7). The feature map is then flattened into
    a linear output layer.
    """
    shape = _check(input_shape, num_classes)
    if len(shape) != 3:
        raise ConfigError(
            f"model cnn: needs (channels, height, width) inputs, got input_shape {shape}; "
            "use mlp or logreg for flat features"
        )
    widths = _widths(channels, "channels")
    if not widths:
        raise ConfigError("model.params.channels: needs at least one convolution")
    c, h, w = shape
    layers: list[nn.Module] = []
    for out in widths:
        layers += [nn.Conv2d(c, out, kernel_size=3, padding=1), nn.ReLU()]
        c = out
        if h >= 2 and w >= 2:
            layers.append(nn.MaxPool2d(2))
            h, w = h // 2, w // 2
    layers += [nn.Flatten(), nn.Linear(c * h * w, num_classes)]
    return nn.Sequential(*layers)
