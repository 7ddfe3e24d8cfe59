"""What a Byzantine node knows (:class:`AttackView`) and what an attack is (:class:`Attack`).

Nodes exchange *parameter vectors* (a model flattened by :mod:`p2pfl.params`), not
gradients, so every attack here crafts a parameter vector: "the honest vector" is
the model an honest node would send after its local training.

Three kinds of attack (``AttackSpec.kind``):

- ``"vector"``: ``craft(view, **params)`` returns ``(d,)``, sent to every target, or
  ``(t, d)``, one row per target in ``view.targets`` order;
- ``"silent"``: the node sends nothing (a crash or omission fault);
- ``"data"``: the node trains on altered data and then sends honestly;
  ``craft`` is ``poison(x, y, num_classes, generator, **params) -> (x, y)``.

:func:`p2pfl.attacks.make_attack` checks a scenario's parameter table once and
returns a frozen :class:`Attack` whose :meth:`Attack.craft` / :meth:`Attack.poison`
take only the per-round inputs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor

AttackKind = Literal["vector", "silent", "data"]
KINDS: tuple[AttackKind, ...] = ("vector", "silent", "data")


def _no_check(**params: Any) -> None:
    """Parameter check of an attack whose parameters need no range check."""


@dataclass(frozen=True)
class Needs:
    """What an attack must see to send something other than what an honest node sends.

    ``honest``: the least number of honest vectors in :attr:`AttackView.honest`
    (ALIE, Min-Max and Min-Sum with a single honest vector send a copy of it);
    ``target_neighbours``: the vectors of each target's honest neighbours, for
    :attr:`AttackView.target_pull` (dissensus: a target none of whose honest
    neighbours the attacker sees is sent its own vector, which does not move it);
    ``before``: the model the honest vectors started this round from
    (:attr:`AttackView.before`, Fang's direction of change). ``text`` says it in
    words, for the README's attack table and for warnings.
    """

    honest: int = 0
    target_neighbours: bool = False
    before: bool = False
    text: str = "nothing but its own vector"


@dataclass(frozen=True)
class AttackView:
    """Everything a Byzantine node may use to craft this round's messages.

    ``own`` (d,) is what the node would send if it were honest. ``honest`` (h, d)
    holds the honest vectors it may use: its honest neighbours' vectors this round
    (local knowledge) or every honest node's (omniscient); ``h`` may be 0, and the
    attacks that need honest vectors then raise ``ValueError`` so the caller can
    choose a fallback. ``targets`` (t, d) are the vectors of the neighbours it sends
    to; ``target_weights`` (t,) the mixing weight each target gives this attacker;
    ``target_pull`` (t, d) is ``sum_k W_ik (x_k - x_i)`` over those honest
    neighbours ``k`` of target ``i`` whose vectors the attacker sees: all of them
    with omniscient knowledge, but with local knowledge only the ones that are the
    attacker's neighbours too, so the pull is then partial, and zero for a target
    with no such neighbour; ``target_byzantine_weight`` (t,) is ``sum_b W_ib`` over
    target ``i``'s Byzantine neighbours. ``n`` is the number of vectors in a
    target's aggregation (own included), ``f`` the number of Byzantine vectors its
    defence assumes. ``before`` (d,), when the caller provides it, is the model
    the honest vectors started this round from, as well as the attacker knows it:
    with omniscient knowledge the mean of the honest nodes' models before this
    round's local training (the analogue of Fang et al.'s global model), with
    local knowledge its own model before local training (its state: the mean of
    its own and its honest neighbours' vectors after the previous round).
    Randomness comes only from ``generator``.

    Shapes are checked on construction (cheap: no pass over the data).
    """

    own: Tensor
    honest: Tensor
    targets: Tensor
    target_weights: Tensor
    target_pull: Tensor
    target_byzantine_weight: Tensor
    n: int
    f: int
    generator: torch.Generator
    before: Tensor | None = None

    def __post_init__(self) -> None:
        for name in ("own", "honest", "targets", "target_weights", "target_pull"):
            value = getattr(self, name)
            if not isinstance(value, Tensor):
                raise ValueError(f"AttackView.{name}: expected a torch.Tensor, got {value!r}")
            if not value.is_floating_point():
                raise ValueError(f"AttackView.{name}: expected a float tensor, got {value.dtype}")
        if not isinstance(self.target_byzantine_weight, Tensor):
            raise ValueError("AttackView.target_byzantine_weight: expected a torch.Tensor")
        if self.own.ndim != 1:
            raise ValueError(f"AttackView.own: expected shape (d,), got {tuple(self.own.shape)}")
        d = self.own.shape[0]
        if self.honest.ndim != 2 or self.honest.shape[1] != d:
            raise ValueError(
                f"AttackView.honest: expected shape (h, {d}), got {tuple(self.honest.shape)}"
            )
        if self.targets.ndim != 2 or self.targets.shape[1] != d:
            raise ValueError(
                f"AttackView.targets: expected shape (t, {d}), got {tuple(self.targets.shape)}"
            )
        t = self.targets.shape[0]
        if tuple(self.target_pull.shape) != (t, d):
            raise ValueError(
                f"AttackView.target_pull: expected shape ({t}, {d}), "
                f"got {tuple(self.target_pull.shape)}"
            )
        for name in ("target_weights", "target_byzantine_weight"):
            shape = tuple(getattr(self, name).shape)
            if shape != (t,):
                raise ValueError(f"AttackView.{name}: expected shape ({t},), got {shape}")
        if isinstance(self.n, bool) or not isinstance(self.n, int) or self.n < 1:
            raise ValueError(f"AttackView.n: expected an integer >= 1, got {self.n!r}")
        # f may exceed n: callers take the largest f and the median n over the targets
        if isinstance(self.f, bool) or not isinstance(self.f, int) or self.f < 0:
            raise ValueError(f"AttackView.f: expected an integer >= 0, got {self.f!r}")
        if not isinstance(self.generator, torch.Generator):
            raise ValueError(
                f"AttackView.generator: expected a torch.Generator, got {self.generator!r}"
            )
        if self.before is not None and (
            not isinstance(self.before, Tensor) or tuple(self.before.shape) != (d,)
        ):
            got = tuple(self.before.shape) if isinstance(self.before, Tensor) else self.before
            raise ValueError(f"AttackView.before: expected a tensor of shape ({d},), got {got}")

    @property
    def d(self) -> int:
        """Length of a parameter vector."""
        return int(self.own.shape[0])


def require_honest(view: AttackView, attack: str) -> Tensor:
    """``view.honest``, or a ``ValueError`` when the attacker sees no honest vector."""
    if view.honest.shape[0] == 0:
        raise ValueError(
            f"attack {attack!r} needs at least one honest vector, but the view has none "
            "(honest has shape (0, d)); the caller must choose a fallback"
        )
    return view.honest


@dataclass(frozen=True)
class AttackSpec:
    """A registered attack: its function, its kind, a one-line summary, what it needs to see.

    ``check(**params)`` validates parameter *values* (ranges) once, in
    :func:`~p2pfl.attacks.make_attack`, raising ``ValueError`` naming the parameter;
    names and types are checked against ``craft``'s keyword-only parameters.
    ``needs`` (:class:`Needs`) is what the attack must see to differ from honest
    behaviour; simulators warn when the scenario's knowledge leaves it less.
    Calling a spec calls ``craft``: that makes it a callable, as
    :class:`~p2pfl.registry.Registry` requires of its entries.
    """

    craft: Callable[..., Any]
    kind: AttackKind
    summary: str
    check: Callable[..., None] = _no_check
    needs: Needs = Needs()

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"AttackSpec.kind: expected one of {KINDS}, got {self.kind!r}")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.craft(*args, **kwargs)


@dataclass(frozen=True)
class Attack:
    """An attack with its parameters checked and fixed (built by ``make_attack``).

    ``params`` holds the checked parameters as sorted ``(name, value)`` pairs so the
    object stays hashable; :attr:`parameters` gives them as a dict.
    """

    name: str
    spec: AttackSpec
    params: tuple[tuple[str, Any], ...] = ()

    @property
    def kind(self) -> AttackKind:
        return self.spec.kind

    @property
    def summary(self) -> str:
        return self.spec.summary

    @property
    def needs(self) -> Needs:
        return self.spec.needs

    @property
    def parameters(self) -> dict[str, Any]:
        return dict(self.params)

    def craft(self, view: AttackView) -> Tensor:
        """The vector(s) to send: ``(d,)`` for every target, or ``(t, d)`` one per target."""
        if self.kind != "vector":
            raise ValueError(
                f"attack {self.name!r} is of kind {self.kind!r} and crafts no vector; "
                "check Attack.kind before calling craft"
            )
        out = self.spec.craft(view, **self.parameters)
        if not isinstance(out, Tensor):
            raise TypeError(f"attack {self.name!r} returned {type(out).__name__}, not a Tensor")
        d, t = view.d, view.targets.shape[0]
        if tuple(out.shape) not in ((d,), (t, d)):
            raise ValueError(
                f"attack {self.name!r} returned shape {tuple(out.shape)}; "
                f"expected ({d},) or ({t}, {d})"
            )
        return out

    def poison(
        self, x: Tensor, y: Tensor, num_classes: int, generator: torch.Generator
    ) -> tuple[Tensor, Tensor]:
        """The altered local training data ``(x, y)`` of a data-poisoning attack."""
        if self.kind != "data":
            raise ValueError(
                f"attack {self.name!r} is of kind {self.kind!r}, not 'data'; it poisons no data"
            )
        out: tuple[Tensor, Tensor] = self.spec.craft(
            x, y, num_classes, generator, **self.parameters
        )
        return out


def frozen_params(params: Mapping[str, Any]) -> tuple[tuple[str, Any], ...]:
    """Parameters as sorted ``(name, value)`` pairs, the form :class:`Attack` stores."""
    return tuple(sorted(params.items()))
