"""Explicit name -> function registries with checked keyword parameters.

Aggregators, attacks, topology builders, partitioners and models are plain typed
functions. A :class:`Registry` maps the names a scenario file may use to those
functions; looking up a name that is not there raises
:class:`~p2pfl.errors.UnknownNameError`, which lists the valid names.

:meth:`Registry.bind` turns ``name`` plus a table of parameters from a scenario
into a callable with those parameters fixed, after checking every parameter name
and type against the function's signature: a misspelt parameter is an error, never
silently ignored.
"""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Generic, TypeVar

from p2pfl.errors import ConfigError, UnknownNameError
from p2pfl.typecheck import coerce

F = TypeVar("F", bound=Callable[..., Any])


def tunable_parameters(fn: Callable[..., Any]) -> dict[str, inspect.Parameter]:
    """The keyword-only parameters of ``fn``: the ones a scenario file may set."""
    sig = inspect.signature(fn)
    return {
        name: p for name, p in sig.parameters.items() if p.kind is inspect.Parameter.KEYWORD_ONLY
    }


def bind_parameters(
    fn: Callable[..., Any], params: Mapping[str, Any], where: str
) -> dict[str, Any]:
    """Check ``params`` against ``fn``'s keyword-only parameters and return them coerced.

    Raises :class:`ConfigError` for an unknown name (listing the valid ones) or a
    value of the wrong type. Missing parameters keep the function's defaults.
    """
    allowed = tunable_parameters(fn)
    target = inspect.unwrap(fn)
    try:
        hints = typing.get_type_hints(target)
    except Exception:  # unresolvable hints: accept values as they are
        hints = {}
    out: dict[str, Any] = {}
    for key, value in params.items():
        if key not in allowed:
            valid = ", ".join(sorted(allowed)) or "(none)"
            raise ConfigError(f"{where}.{key}: unknown parameter; valid parameters: {valid}")
        out[key] = coerce(value, hints.get(key, Any), f"{where}.{key}")
    missing = [
        n for n, p in allowed.items() if p.default is inspect.Parameter.empty and n not in out
    ]
    if missing:
        raise ConfigError(f"{where}: missing required parameter(s): {', '.join(missing)}")
    return out


class Registry(Generic[F]):
    """An explicit, read-only mapping from names to typed functions of one kind."""

    def __init__(self, kind: str, entries: Mapping[str, F]) -> None:
        self.kind = kind
        self._entries = dict(entries)

    def __getitem__(self, name: str) -> F:
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownNameError(self.kind, name, self._entries) from None

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def names(self) -> list[str]:
        return sorted(self._entries)

    def bind(
        self,
        name: str,
        params: Mapping[str, Any],
        where: str,
        reserved: Mapping[str, str] | None = None,
    ) -> Callable[..., Any]:
        """``self[name]`` with ``params`` checked and fixed as keyword arguments.

        ``reserved`` maps parameter names the caller sets itself to where the user
        sets them instead (``{"seed": "run.seed"}``): naming one in ``params`` is an
        error rather than a value silently overridden.
        """
        fn = self[name]
        for key, owner in (reserved or {}).items():
            if key in params:
                raise ConfigError(f"{where}.{key}: set by {owner}, not here")
        checked = bind_parameters(fn, params, where)
        return functools.partial(fn, **checked) if checked else fn
