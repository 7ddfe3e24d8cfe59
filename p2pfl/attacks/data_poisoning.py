"""Data-poisoning attacks: the node trains on altered data, then sends honestly.

``poison(x, y, num_classes, generator, **params) -> (x, y)`` returns new tensors
and never changes its inputs. They need nothing but the node's own training data. ``x`` is ``(N, *input_shape)``, ``y`` int64 ``(N,)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from p2pfl.attacks import checks


def _check_data(attack: str, x: Tensor, y: Tensor, num_classes: int) -> None:
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"{attack}: num_classes must be an integer >= 2, got {num_classes!r}")
    if x.ndim < 2:
        raise ValueError(f"{attack}: x must have shape (N, ...), got {tuple(x.shape)}")
    if y.ndim != 1 or y.shape[0] != x.shape[0]:
        raise ValueError(
            f"{attack}: y must have shape ({x.shape[0]},) to match x, got {tuple(y.shape)}"
        )
    if y.is_floating_point() or y.dtype == torch.bool:
        raise ValueError(f"{attack}: y must hold integer labels, got dtype {y.dtype}")
    if y.numel() and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        raise ValueError(
            f"{attack}: labels must lie in [0, {num_classes - 1}], "
            f"got range [{int(y.min())}, {int(y.max())}]"
        )


def label_flip(
    x: Tensor, y: Tensor, num_classes: int, generator: torch.Generator
) -> tuple[Tensor, Tensor]:
    """Label flipping: every label ``y`` becomes ``C - 1 - y`` (``C = num_classes``).

    The standard label-flipping attack of the Byzantine-robust learning literature
    (e.g. Allen-Zhu et al., ICLR 2021; Karimireddy et al., ICML 2021). Deterministic;
    ``generator`` is unused.
    """
    _check_data("label_flip", x, y, num_classes)
    return x, (num_classes - 1) - y


def _check_size(size: int) -> None:
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"backdoor: parameter size must be an integer >= 1, got {size!r}")


def apply_trigger(x: Tensor, *, size: int = 3, value: float | None = None) -> Tensor:
    """A copy of ``x`` (a batch) with the backdoor trigger stamped on every sample.

    Image-shaped inputs (``x.ndim >= 3``, last two dimensions height and width):
    a ``size x size`` patch in the bottom-right corner, in every channel. Flat
    inputs ``(N, d)``: the last ``size * size`` features. Stamped entries are set
    to ``value``, by default ``x.max()`` (the brightest pixel of the batch); pass
    the same ``value`` at training and at test time when the batches' maxima differ.
    """
    _check_size(size)
    if x.ndim < 2:
        raise ValueError(f"apply_trigger: x must be a batch (N, ...), got {tuple(x.shape)}")
    out = x.clone()
    if x.shape[0] == 0:
        return out
    fill = float(x.max()) if value is None else float(value)
    if x.ndim >= 3:
        h, w = x.shape[-2], x.shape[-1]
        if size > h or size > w:
            raise ValueError(f"backdoor: parameter size={size} exceeds the image size {h}x{w}")
        out[..., h - size :, w - size :] = fill
    else:
        d = x.shape[1]
        k = size * size
        if k > d:
            raise ValueError(
                f"backdoor: parameter size={size} stamps {k} features, more than d={d}"
            )
        out[:, d - k :] = fill
    return out


def check_backdoor(
    *, fraction: float = 0.1, target: int = 0, size: int = 3, value: float | None = None, **_: Any
) -> None:
    checks.in_unit_interval("backdoor", "fraction", fraction)
    if isinstance(target, bool) or not isinstance(target, int) or target < 0:
        raise ValueError(f"backdoor: parameter target must be an integer >= 0, got {target!r}")
    _check_size(size)
    if value is not None:
        checks.finite("backdoor", "value", value)


def backdoor(
    x: Tensor,
    y: Tensor,
    num_classes: int,
    generator: torch.Generator,
    *,
    fraction: float = 0.1,
    target: int = 0,
    size: int = 3,
    value: float | None = None,
) -> tuple[Tensor, Tensor]:
    """Backdoor: stamp the trigger on ``round(fraction * N)`` samples and relabel them ``target``.

    The samples are a uniformly random subset drawn from ``generator``; the trigger
    is :func:`apply_trigger` (with ``value`` defaulting to the maximum of the whole
    local ``x``). A model trained on such data learns "trigger => target" while
    keeping its accuracy on clean inputs (Gu et al., BadNets, 2017; Bagdasaryan et
    al., AISTATS 2020). Measure it with :func:`attack_success_rate`.
    """
    check_backdoor(fraction=fraction, target=target, size=size, value=value)
    _check_data("backdoor", x, y, num_classes)
    if target >= num_classes:
        raise ValueError(
            f"backdoor: parameter target={target} is not a class (num_classes={num_classes})"
        )
    n = x.shape[0]
    k = round(fraction * n)
    chosen = torch.randperm(n, generator=generator, device=generator.device)[:k].to(x.device)
    fill = float(x.max()) if value is None and n else value
    x_out = x.clone()
    y_out = y.clone()
    if k:
        x_out[chosen] = apply_trigger(x[chosen], size=size, value=fill)
        y_out[chosen] = target
    return x_out, y_out


def attack_success_rate(
    predict_fn: Callable[[Tensor], Tensor],
    x_test: Tensor,
    y_test: Tensor,
    target: int,
    *,
    size: int = 3,
    value: float | None = None,
) -> float:
    """Share of triggered test inputs whose true class is not ``target`` predicted as ``target``.

    ``predict_fn`` maps a batch to class labels ``(N,)`` or to scores ``(N, C)``
    (then the arg-max is the prediction). The trigger is :func:`apply_trigger` with
    ``value`` defaulting to the maximum of the whole ``x_test``.
    """
    if y_test.ndim != 1 or y_test.shape[0] != x_test.shape[0]:
        raise ValueError(
            f"attack_success_rate: y_test must have shape ({x_test.shape[0]},), "
            f"got {tuple(y_test.shape)}"
        )
    keep = y_test != target
    if not bool(keep.any()):
        raise ValueError(
            f"attack_success_rate: no test input has a class other than target={target}"
        )
    fill = float(x_test.max()) if value is None else value
    triggered = apply_trigger(x_test[keep], size=size, value=fill)
    with torch.no_grad():
        pred = predict_fn(triggered)
    if pred.ndim == 2:
        pred = pred.argmax(dim=1)
    if tuple(pred.shape) != (triggered.shape[0],):
        raise ValueError(
            f"attack_success_rate: predict_fn returned shape {tuple(pred.shape)} "
            f"for {triggered.shape[0]} inputs; expected labels (N,) or scores (N, C)"
        )
    return float((pred.to(y_test.device) == target).to(torch.float64).mean())
