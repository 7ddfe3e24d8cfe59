"""Range checks for attack parameters; each error names the attack and the parameter."""

from __future__ import annotations

import math


def finite(attack: str, name: str, value: float) -> None:
    if not math.isfinite(value):
        raise ValueError(f"{attack}: parameter {name} must be finite, got {value!r}")


def positive(attack: str, name: str, value: float) -> None:
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{attack}: parameter {name} must be > 0, got {value!r}")


def non_negative(attack: str, name: str, value: float) -> None:
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{attack}: parameter {name} must be >= 0, got {value!r}")


def in_unit_interval(attack: str, name: str, value: float) -> None:
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        raise ValueError(f"{attack}: parameter {name} must be in [0, 1], got {value!r}")


def greater_than(attack: str, name: str, value: float, bound: float) -> None:
    if not (math.isfinite(value) and value > bound):
        raise ValueError(f"{attack}: parameter {name} must be > {bound}, got {value!r}")


def one_of(attack: str, name: str, value: object, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{attack}: parameter {name} must be one of {allowed}, got {value!r}")
