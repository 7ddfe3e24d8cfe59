"""Explicit name -> function registries with checked keyword parameters.

Aggregators, attacks, topology builders, partitioners and models are plain typed
functions. A :class:`Registry` maps the names a scenario file may use to those
functions; looking up a name that is not there raises
:class:`~p2pfl.errors.UnknownNameError`, which lists the valid names.

:meth:`Registry.bind` turns ``name`` plus a table of parameters from a scenario
into a callable with those parameters fixed, after checking every parameter name
and type against the function's signature: a misspelt parameter is an error, never
silently ignored.

Models, aggregators and attacks may also be named by an import path,
``"package.module:object"`` (:func:`import_object`), so a scenario can use one
written outside p2pfl (``docs/extending.md``).
"""

from __future__ import annotations

import functools
import importlib
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


def is_import_path(name: str) -> bool:
    """Whether ``name`` is an import path ``package.module:object`` rather than a registered name."""
    return ":" in name


def import_object(path: str, key: str, what: str = "object") -> Any:
    """The object named by ``"package.module:attribute"`` (imported with importlib).

    ``attribute`` may be dotted (``module:Class.factory``). Every failure is a
    :class:`ConfigError` naming ``key``, the scenario key that holds ``path``: a
    malformed path, a module that cannot be imported (the module must be on
    ``sys.path``, e.g. through ``PYTHONPATH``), a module that raises while being
    imported, a missing attribute, an object that is not callable.
    """
    module_name, _, attr = path.partition(":")
    if not module_name or not attr:
        raise ConfigError(f"{key}: {path!r} is not of the form 'package.module:{what}'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"{key}: cannot import module {module_name!r} ({exc})") from None
    except Exception as exc:  # the user's module itself is broken: say where
        raise ConfigError(
            f"{key}: importing {module_name!r} failed: {type(exc).__name__}: {exc}"
        ) from exc
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ConfigError(f"{key}: module {module_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ConfigError(f"{key}: {path!r} is not callable")
    return obj


class Registry(Generic[F]):
    """An explicit, read-only mapping from names to typed functions of one kind.

    ``key`` is the scenario key that names an entry (``"byzantine.attack"``):
    an unknown name is reported against it. ``importable`` says that the key also
    accepts an import path (the error message then says so).
    """

    def __init__(
        self, kind: str, entries: Mapping[str, F], key: str | None = None, importable: bool = False
    ) -> None:
        self.kind = kind
        self.key = key
        self.importable = importable
        self._entries = dict(entries)

    def __getitem__(self, name: str) -> F:
        return self.lookup(name)

    def lookup(self, name: str, key: str | None = None) -> F:
        """``self[name]``; an unknown name is an :class:`UnknownNameError` naming ``key``
        (default: the registry's own key)."""
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            raise UnknownNameError(
                self.kind,
                name,
                self._entries,
                key=key or self.key,
                importable=self.importable,
            ) from None

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
        key: str | None = None,
    ) -> Callable[..., Any]:
        """``self[name]`` with ``params`` checked and fixed as keyword arguments.

        ``reserved`` maps parameter names the caller sets itself to where the user
        sets them instead (``{"seed": "run.seed"}``): naming one in ``params`` is an
        error rather than a value silently overridden. ``key`` overrides the key an
        unknown ``name`` is reported against.
        """
        fn = self.lookup(name, key)
        for key, owner in (reserved or {}).items():
            if key in params:
                raise ConfigError(f"{where}.{key}: set by {owner}, not here")
        checked = bind_parameters(fn, params, where)
        return functools.partial(fn, **checked) if checked else fn
