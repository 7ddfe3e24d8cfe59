"""``build_model``: a model by registered name or import path, seeded, with optional weights.

Initialization is deterministic without touching the process-wide RNG: the factory
runs inside ``torch.random.fork_rng`` seeded with ``seed``, so the same ``seed``
gives bit-identical weights and the caller's global torch RNG state is unchanged
afterwards.
"""

from __future__ import annotations

import fnmatch
import inspect
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from p2pfl.errors import ConfigError, P2PFLError
from p2pfl.models.catalog import MODELS, ModelFactory
from p2pfl.registry import bind_parameters, import_object, is_import_path
from p2pfl.typecheck import coerce


def import_factory(path: str) -> ModelFactory:
    """The callable named by ``"package.module:attribute"`` (imported with importlib)."""
    return typing.cast(ModelFactory, import_object(path, "model.name", "factory"))


def _imported_params(factory: ModelFactory, params: Mapping[str, Any], path: str) -> dict[str, Any]:
    """Check ``params`` against an imported factory's signature; coerce annotated ones."""
    try:
        sig = inspect.signature(factory)
    except ValueError:  # no signature (some builtins): let the call itself decide
        return dict(params)
    named = {
        n
        for n, p in sig.parameters.items()
        if p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    }
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in sig.parameters.values())
    for key in params:
        if key in ("input_shape", "num_classes"):
            raise ConfigError(f"model.params.{key}: set by the dataset, not by model.params")
        if key not in named and not takes_any:
            valid = ", ".join(sorted(named - {"input_shape", "num_classes"})) or "(none)"
            raise ConfigError(f"model.params.{key}: unknown parameter; valid parameters: {valid}")
    try:
        sig.bind(input_shape=(1,), num_classes=2, **params)
    except TypeError as exc:
        raise ConfigError(
            f"model.params: {path} must accept input_shape=..., num_classes=... and the "
            f"given parameters as keywords ({exc})"
        ) from None
    try:
        hints = typing.get_type_hints(factory)
    except Exception:  # unresolvable annotations: take the values as they are
        hints = {}
    return {k: coerce(v, hints.get(k, Any), f"model.params.{k}") for k, v in params.items()}


def _check_output(model: nn.Module, name: str, shape: tuple[int, ...], num_classes: int) -> None:
    """Run a batch of two zero inputs once, so a wrong architecture fails here, by name."""
    bad = [n for n, p in model.named_parameters() if p.dtype != torch.float32]
    if bad:
        raise ConfigError(f"model {name}: parameters must be float32; {bad[0]!r} is not")
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(torch.zeros((2, *shape)))
    except Exception as exc:
        raise ConfigError(
            f"model {name}: cannot take inputs of shape {shape} "
            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
        ) from exc
    finally:
        model.train(was_training)
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (2, num_classes):
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ConfigError(
            f"model {name}: maps a (2, {', '.join(map(str, shape))}) batch to {got}, "
            f"expected (2, {num_classes}) logits"
        )


def load_initial_weights(model: nn.Module, path: str | Path) -> None:
    """Load a ``state_dict`` saved with ``torch.save`` into ``model`` (strict, on the CPU).

    ``torch.load(weights_only=True)`` only rebuilds tensors and plain containers, so
    a file cannot run code. A missing or unreadable file, a file that is not a
    mapping of names to tensors, and missing, unexpected or mis-shaped entries are
    :class:`~p2pfl.errors.ConfigError`\\ s naming the first offending keys.
    """
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"model.init: weights file not found: {file}")
    try:
        state = torch.load(file, weights_only=True, map_location="cpu")
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise ConfigError(
            f"model.init: {file} is not a readable PyTorch weights file "
            f"({type(exc).__name__}: {first})"
        ) from None
    if not isinstance(state, Mapping) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise ConfigError(
            f"model.init: {file} must hold a state dict (a mapping of names to tensors), "
            f"got {type(state).__name__}"
        )
    expected = model.state_dict()
    problems = []
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [
        f"{k} {tuple(state[k].shape)} != {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    if missing:
        problems.append(
            f"missing keys: {', '.join(missing[:3])}" + (" ..." if len(missing) > 3 else "")
        )
    if unexpected:
        problems.append(
            f"unexpected keys: {', '.join(unexpected[:3])}"
            + (" ..." if len(unexpected) > 3 else "")
        )
    if shapes:
        problems.append(
            f"shape mismatch: {'; '.join(shapes[:3])}" + (" ..." if len(shapes) > 3 else "")
        )
    if problems:
        raise ConfigError(f"model.init: {file} does not fit the model: {'; '.join(problems)}")
    nonfinite = [
        k for k, v in state.items() if v.is_floating_point() and not bool(v.isfinite().all())
    ]
    if nonfinite:
        raise ConfigError(f"model.init: {file}: {nonfinite[0]!r} holds NaN or infinite values")
    model.load_state_dict(state, strict=True)


def freeze(model: nn.Module, patterns: Sequence[str]) -> None:
    """Set ``requires_grad = False`` on every parameter whose name matches a glob pattern.

    Patterns are :func:`fnmatch.fnmatchcase` globs on the names of
    ``model.named_parameters()``. A pattern that matches no parameter, and a set of
    patterns that freezes every parameter, are :class:`~p2pfl.errors.ConfigError`\\ s
    naming the pattern and the parameters there are.
    """
    names = [name for name, _ in model.named_parameters()]
    shown = ", ".join(names[:12]) + (" ..." if len(names) > 12 else "")
    chosen: set[str] = set()
    for pattern in patterns:
        if not isinstance(pattern, str) or not pattern:
            raise ConfigError(f"model.freeze: patterns must be non-empty strings, got {pattern!r}")
        hits = [n for n in names if fnmatch.fnmatchcase(n, pattern)]
        if not hits:
            raise ConfigError(
                f"model.freeze: pattern {pattern!r} matches no parameter; the model's "
                f"parameters are: {shown}"
            )
        chosen.update(hits)
    if chosen and chosen >= set(names):
        raise ConfigError(
            f"model.freeze: {list(patterns)} freezes every parameter; nothing would be trained"
        )
    for name, p in model.named_parameters():
        if name in chosen:
            p.requires_grad_(False)


def build_model(
    name: str,
    params: Mapping[str, Any],
    input_shape: Sequence[int],
    num_classes: int,
    seed: int,
    init_path: str | None = None,
    frozen: Sequence[str] = (),
) -> nn.Module:
    """Build the model ``name`` for ``input_shape`` and ``num_classes``, initialized from ``seed``.

    ``name`` is a key of :data:`~p2pfl.models.MODELS` (its ``params`` checked against
    the factory's keyword-only parameters) or an import path ``"package.module:factory"``;
    an imported factory is called as ``factory(input_shape=..., num_classes=...,
    **params)`` and must return an ``nn.Module`` producing ``(B, num_classes)``
    logits. ``init_path``, when given, replaces the seeded weights with a saved
    ``state_dict`` (see :func:`load_initial_weights`); then the parameters matching
    the glob patterns ``frozen`` are frozen (:func:`freeze`).
    """
    shape = tuple(int(s) for s in input_shape)
    if is_import_path(name):
        factory = import_factory(name)
        kwargs = _imported_params(factory, params, name)
    else:
        factory = MODELS[name]
        kwargs = bind_parameters(factory, params, "model.params")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        try:
            model = factory(input_shape=shape, num_classes=num_classes, **kwargs)
        except P2PFLError:
            raise
        except Exception as exc:
            raise ConfigError(
                f"model {name}: the factory failed: {type(exc).__name__}: {exc}"
            ) from exc
    if not isinstance(model, nn.Module):
        raise ConfigError(
            f"model {name}: the factory returned {type(model).__name__}, not an nn.Module"
        )
    _check_output(model, name, shape, num_classes)
    if init_path is not None:
        load_initial_weights(model, init_path)
    freeze(model, frozen)
    return model
