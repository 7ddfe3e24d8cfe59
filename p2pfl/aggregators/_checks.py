"""Input validation shared by the aggregation rules.

Every public rule checks its inputs here, at the boundary, so a bad call fails
with a ``ValueError`` that names the rule and the problem instead of a traceback
from deep inside a sort or a matrix product.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

FLOAT_DTYPES = (torch.float32, torch.float64)


def as_batch(x: object, rule: str, name: str = "x") -> tuple[Tensor, bool]:
    """``x`` as a ``(b, n, d)`` tensor, and whether it was given batched.

    Accepts ``(n, d)`` (returned as a view of shape ``(1, n, d)``) or ``(b, n, d)``
    float32/float64 tensors with at least one vector.
    """
    if not isinstance(x, Tensor):
        raise ValueError(f"{rule}: {name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dtype not in FLOAT_DTYPES:
        raise ValueError(f"{rule}: {name} must be float32 or float64, got {x.dtype}")
    if x.ndim not in (2, 3):
        raise ValueError(
            f"{rule}: {name} must have shape (n, d) or (b, n, d), got {x.ndim} dimensions "
            f"{tuple(x.shape)}"
        )
    if x.shape[-2] == 0:
        raise ValueError(f"{rule}: {name} holds no vectors (n = 0), shape {tuple(x.shape)}")
    return (x if x.ndim == 3 else x.unsqueeze(0)), x.ndim == 3


def check_finite(x: Tensor, rule: str, name: str = "x") -> None:
    """Raise if ``x`` holds a NaN or an infinity.

    ``aminmax`` reads the data once without allocating a mask; NaN propagates to
    the minimum and infinities show up as the extremes.
    """
    if x.numel() == 0:
        return
    lo, hi = torch.aminmax(x)
    if not (math.isfinite(float(lo)) and math.isfinite(float(hi))):
        raise ValueError(f"{rule}: {name} contains NaN or infinite values")


def check_int(value: object, rule: str, name: str, minimum: int) -> int:
    """``value`` as an ``int`` >= ``minimum`` (a bool is not an integer here)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{rule}: {name} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{rule}: {name} must be >= {minimum}, got {value}")
    return value


def check_positive(value: object, rule: str, name: str, *, allow_zero: bool = False) -> float:
    """``value`` as a finite float > 0 (or >= 0 with ``allow_zero``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{rule}: {name} must be a number, got {value!r}")
    v = float(value)
    if not math.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{rule}: {name} must be finite and {bound}, got {value!r}")
    return v


def check_f(n: int, f: object, rule: str, need: Callable[[int], int], formula: str) -> int:
    """Check the number ``f`` of Byzantine inputs against the ``n`` inputs given.

    ``need(f)`` is the least ``n`` the rule accepts; ``formula`` the requirement as
    written in the paper (``"2f+3"``), quoted in the error message.
    """
    f_int = check_int(f, rule, "f", 0)
    least = need(f_int)
    if n < least:
        raise ValueError(
            f"{rule} needs n >= {formula} = {least} input vectors to tolerate f={f_int}, got n={n}"
        )
    return f_int


def check_weights(
    weights: object, n: int, b: int, batched: bool, rule: str, name: str = "weights"
) -> Tensor:
    """Mixing weights as a float64 ``(b, n)`` tensor: finite, >= 0, one per input."""
    if not isinstance(weights, Tensor):
        raise ValueError(f"{rule}: {name} must be a torch.Tensor, got {type(weights).__name__}")
    if not weights.is_floating_point():
        raise ValueError(f"{rule}: {name} must be a float tensor, got {weights.dtype}")
    expected = (b, n) if batched else (n,)
    if tuple(weights.shape) != expected:
        raise ValueError(
            f"{rule}: {name} must have shape {expected} (one per input vector), "
            f"got {tuple(weights.shape)}"
        )
    w = weights.to(torch.float64).reshape(b, n)
    if not bool(torch.isfinite(w).all()):
        raise ValueError(f"{rule}: {name} contains NaN or infinite values")
    if bool((w < 0).any()):
        raise ValueError(f"{rule}: {name} must be non-negative")
    return w


def unbatch(out: Tensor, batched: bool) -> Tensor:
    """Drop the batch dimension added by :func:`as_batch`."""
    return out if batched else out.squeeze(0)
