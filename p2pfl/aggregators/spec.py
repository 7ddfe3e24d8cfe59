"""Registered rules (:class:`AggregatorSpec`) and a rule with fixed parameters (:class:`Aggregator`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from torch import Tensor

from p2pfl.aggregators.neighbourhood import Neighbourhood


def _no_check(**params: Any) -> None:
    """Value check of a rule whose parameters need no range check."""


def _no_oracle(**params: Any) -> bool:
    """A rule that needs nothing a deployed node lacks."""
    return False


@dataclass(frozen=True)
class AggregatorSpec:
    """A node-level rule: ``rule(hood, **params) -> (b, d)``.

    ``min_inputs(f, **params)`` is the least number of vectors, own included, the
    rule needs to tolerate ``f`` Byzantine ones. ``check(**params)`` validates
    parameter values once (raising ``ValueError`` that starts with the parameter
    name); names and types are checked against ``rule``'s keyword-only
    parameters. ``oracle(**params)`` says whether the rule, so configured, needs
    to know which received vectors are Byzantine (``Neighbourhood.byzantine``,
    which only the simulator fills in). Calling a spec calls ``rule``
    (registries hold callables).
    """

    rule: Callable[..., Tensor]
    min_inputs: Callable[..., int]
    summary: str
    check: Callable[..., None] = _no_check
    oracle: Callable[..., bool] = _no_oracle

    def __call__(self, *args: Any, **kwargs: Any) -> Tensor:
        return self.rule(*args, **kwargs)


@dataclass(frozen=True)
class PreAggregatorSpec:
    """A pre-aggregation step: ``rule(x, f) -> x'`` on ``(b, n, d)`` own+received vectors."""

    rule: Callable[[Tensor, int], Tensor]
    min_inputs: Callable[[int], int]
    summary: str

    def __call__(self, x: Tensor, f: int) -> Tensor:
        return self.rule(x, f)


@dataclass(frozen=True)
class Aggregator:
    """A rule with its parameters checked and fixed (built by ``make_aggregator``).

    ``agg(hood) -> (b, d)`` applies the pre-aggregation steps ``pre`` (in order) to
    own+received, then the rule. ``params`` holds the parameters as sorted
    ``(name, value)`` pairs so the object stays hashable.
    """

    name: str
    spec: AggregatorSpec
    params: tuple[tuple[str, Any], ...] = ()
    pre: tuple[tuple[str, PreAggregatorSpec], ...] = ()

    @property
    def parameters(self) -> dict[str, Any]:
        return dict(self.params)

    @property
    def summary(self) -> str:
        return self.spec.summary

    @property
    def needs_oracle(self) -> bool:
        """The rule needs to know which inputs are Byzantine: simulator only."""
        return bool(self.spec.oracle(**self.parameters))

    def min_inputs(self, f: int) -> int:
        """Least number of vectors, own included, this rule needs with ``f`` Byzantine ones."""
        need = int(self.spec.min_inputs(f, **self.parameters))
        return max([need, *(int(step.min_inputs(f)) for _, step in self.pre)])

    def __call__(self, hood: Neighbourhood) -> Tensor:
        need = self.min_inputs(hood.f)
        if hood.n < need:
            raise ValueError(
                f"aggregator {self.name!r} needs at least {need} vectors (own included) "
                f"to tolerate f={hood.f}, got {hood.n}"
            )
        if self.pre:
            x = hood.stacked()
            for _, step in self.pre:
                x = step.rule(x, hood.f)
            hood = Neighbourhood.of_stacked(x, hood.weights, hood.f, hood.byzantine)
        return self.spec.rule(hood, **self.parameters)


def frozen_params(params: Mapping[str, Any]) -> tuple[tuple[str, Any], ...]:
    """Parameters as sorted ``(name, value)`` pairs, the form :class:`Aggregator` stores."""
    return tuple(sorted(params.items()))
