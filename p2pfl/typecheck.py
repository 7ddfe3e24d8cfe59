"""Checks plain values (from TOML, JSON or the command line) against type hints.

One function, :func:`coerce`, serves the scenario loader and every registry, so a
wrong type gets the same clear message wherever it is written: it names the key,
the expected type and the value received.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any, Literal, Union

from p2pfl.errors import ConfigError


def describe(annotation: Any) -> str:
    """A short human name for a type hint (``int``, ``list of float``, ``'a' | 'b'``)."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if annotation is Any:
        return "any value"
    if origin is Literal:
        return " | ".join(repr(a) for a in args)
    if origin in (Union, types.UnionType):
        return " or ".join(describe(a) for a in args if a is not type(None)) + (
            " or none" if type(None) in args else ""
        )
    if origin in (list, tuple, Sequence):
        inner = args[0] if args else Any
        return f"list of {describe(inner)}"
    if origin in (dict, Mapping):
        return "table"
    return getattr(annotation, "__name__", str(annotation))


def coerce(value: Any, annotation: Any, where: str) -> Any:
    """Return ``value`` checked against ``annotation``; raise :class:`ConfigError` naming ``where``.

    Accepted conversions are the lossless ones a TOML user expects: an integer where a
    float is wanted, a list where a tuple is wanted. A bool is never taken as a number.
    """
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if annotation is Any or annotation is object:
        return value
    if origin is Literal:
        if value in args and type(value) is type(next(a for a in args if a == value)):
            return value
        raise ConfigError(f"{where}: expected one of {describe(annotation)}, got {value!r}")
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        members = [a for a in args if a is not type(None)]
        if len(members) == 1:  # Optional[X]: X's own, more precise message
            return coerce(value, members[0], where)
        for arg in members:
            try:
                return coerce(value, arg, where)
            except ConfigError:
                continue
        raise ConfigError(f"{where}: expected {describe(annotation)}, got {value!r}")
    if origin in (list, tuple, Sequence):
        if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected {describe(annotation)}, got {value!r}")
        inner = args[0] if args else Any
        items = [coerce(v, inner, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin in (dict, Mapping):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a table, got {value!r}")
        val_type = args[1] if len(args) == 2 else Any
        return {str(k): coerce(v, val_type, f"{where}.{k}") for k, v in value.items()}
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if annotation is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if annotation is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    if isinstance(annotation, type):
        if isinstance(value, annotation):
            return value
        raise ConfigError(f"{where}: expected {describe(annotation)}, got {value!r}")
    return value
