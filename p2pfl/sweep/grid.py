"""Sweep grids: ``--grid key=v1,v2,...`` axes and their cartesian product, ``--zip`` pairs.

Each value is parsed exactly like a ``--set`` value (:func:`p2pfl.config.parse_override`:
a TOML value, or a bare word taken as a string), so ``--grid model.params.hidden=[32],[64,64]``
gives two lists. Commas separate values only at the top level: inside brackets, braces or
quotes they belong to the value.

``--zip [GROUP:]key=v1,v2,...`` axes are not crossed with each other: the ``--zip``
axes of one group (the default group when ``GROUP:`` is left out) together form one
more dimension of the product, their values taken position by position
(``--zip byzantine.attack=alie,ipm --zip byzantine.params={z=10},{eps=0.1}`` sweeps
ALIE with ``z = 10`` and IPM with ``eps = 0.1``, not four pairs), so every ``--zip``
of a group must list the same number of values. Different groups are crossed, like
``--grid`` axes (``--zip rule:aggregator.name=... --zip rule:aggregator.params=...``
next to an attack group).

A :class:`Cell` is one point of the product plus one seed; its overrides are plain
``key=text`` strings, so the scenario a cell runs is ``load_scenario(path, set + cell)``.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from p2pfl.config import parse_override
from p2pfl.errors import ConfigError

SEED_KEY = "run.seed"
_OPEN = {"[": "]", "{": "}"}


@dataclass(frozen=True)
class GridAxis:
    """One swept key and its values: ``texts`` as written, ``values`` as parsed."""

    key: str
    texts: tuple[str, ...]
    values: tuple[Any, ...]

    def __post_init__(self) -> None:
        if not self.texts or len(self.texts) != len(self.values):
            raise ConfigError(f"--grid {self.key}: needs at least one value")


@dataclass(frozen=True)
class ZipAxis(GridAxis):
    """A ``--zip`` axis: its values pair, position by position, with its group's other axes."""

    group: str = ""


@dataclass(frozen=True)
class Cell:
    """One run of a sweep: a value for every swept key, and a seed."""

    values: tuple[tuple[str, str], ...]  # (key, value text), in axis order
    seed: int

    @property
    def overrides(self) -> list[str]:
        """``--set``-style overrides for this cell (the seed last, so it always wins)."""
        return [f"{k}={v}" for k, v in self.values] + [f"{SEED_KEY}={self.seed}"]

    def label(self) -> str:
        names = short_names([k for k, _ in self.values])
        parts = [f"{names[k]}={display(v)}" for k, v in self.values]
        return " ".join([*parts, f"seed={self.seed}"])


def short_names(keys: Sequence[str]) -> dict[str, str]:
    """Each key's last part (``aggregator.name`` -> ``name``), or the whole key where two
    keys share it (``aggregator.params`` and ``byzantine.params`` stay whole)."""
    last = [k.rsplit(".", 1)[-1] for k in keys]
    return {k: s if last.count(s) == 1 else k for k, s in zip(keys, last, strict=True)}


def display(text: str) -> str:
    """A value as shown in tables: quotes around a TOML string dropped."""
    t = text.strip()
    if len(t) >= 2 and t[0] == t[-1] and t[0] in "\"'":
        return t[1:-1]
    return t


def split_values(text: str) -> list[str]:
    """Split ``v1,v2,...`` on top-level commas (not inside ``[]``, ``{}`` or quotes)."""
    parts: list[str] = []
    stack: list[str] = []
    quote = ""
    start = 0
    for i, ch in enumerate(text):
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "\"'":
            quote = ch
        elif ch in _OPEN:
            stack.append(_OPEN[ch])
        elif ch in "]}":
            if not stack or stack.pop() != ch:
                raise ConfigError(f"--grid value {text!r}: unbalanced {ch!r}")
        elif ch == "," and not stack:
            parts.append(text[start:i])
            start = i + 1
    if quote or stack:
        raise ConfigError(f"--grid value {text!r}: unclosed {quote or '[ or {'}")
    parts.append(text[start:])
    return [p.strip() for p in parts]


def parse_axis(text: str, unique: bool = True) -> GridAxis:
    """Parse one ``--grid key=v1,v2,...`` argument (``unique``: no value listed twice)."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key or not raw.strip():
        raise ConfigError(f"--grid {text!r}: expected section.key=v1,v2,...")
    if "." not in key:
        raise ConfigError(
            f"--grid {text!r}: the key must name a section and a key, e.g. aggregator.name"
        )
    texts = split_values(raw)
    if any(not t for t in texts):
        raise ConfigError(f"--grid {text!r}: empty value in the list")
    values = []
    for t in texts:
        _, value = parse_override(f"{key}={t}")
        values.append(value)
    if unique and len({repr(v) for v in values}) != len(values):
        raise ConfigError(f"--grid {text!r}: a value is listed twice")
    return GridAxis(key, tuple(texts), tuple(values))


def parse_zip(text: str) -> ZipAxis:
    """Parse one ``--zip [GROUP:]key=v1,v2,...`` argument (keys hold no ``:``, values may)."""
    head, sep, raw = text.partition("=")
    group, colon, key = head.rpartition(":")
    if colon and not group.strip():
        raise ConfigError(f"--zip {text!r}: empty group name before ':'")
    # A value may repeat within one --zip (clipped_gossip twice, with two radii).
    axis = parse_axis(f"{key}{sep}{raw}", unique=False)
    return ZipAxis(axis.key, axis.texts, axis.values, group.strip())


def parse_grid(texts: Sequence[str], zipped: Sequence[str] = ()) -> list[GridAxis]:
    """Parse every ``--grid`` argument, then every ``--zip`` one; a key swept twice is an error.

    The ``--zip`` axes come last, in order (:func:`zip_groups` gathers them); the
    axes of one group must all have the same number of values.
    """
    axes = [parse_axis(t) for t in texts]
    pairs = [parse_zip(t) for t in zipped]
    seen: set[str] = set()
    for axis in [*axes, *pairs]:
        if axis.key in seen:
            raise ConfigError(
                f"--grid/--zip {axis.key}: swept twice; list all its values in one --grid or --zip"
            )
        seen.add(axis.key)
    for group in _groups(pairs):
        if len({len(a.texts) for a in group}) > 1:
            counts = ", ".join(f"{a.key} has {len(a.texts)}" for a in group)
            raise ConfigError(f"--zip: the --zip keys of a group need as many values ({counts})")
        combos = [tuple(repr(a.values[k]) for a in group) for k in range(len(group[0].values))]
        if len(set(combos)) != len(combos):
            raise ConfigError(f"--zip {group[0].key}: a combination of values is listed twice")
    return [*axes, *pairs]


def _groups(axes: Sequence[GridAxis]) -> list[list[ZipAxis]]:
    out: dict[str, list[ZipAxis]] = {}
    for a in axes:
        if isinstance(a, ZipAxis):
            out.setdefault(a.group, []).append(a)
    return list(out.values())


def zip_groups(axes: Sequence[GridAxis]) -> list[list[str]]:
    """The keys of each ``--zip`` group, groups in order of first appearance."""
    return [[a.key for a in group] for group in _groups(axes)]


def expand(axes: Sequence[GridAxis], seeds: Sequence[int]) -> list[Cell]:
    """The product of the ``--grid`` axes and the ``--zip`` groups (first axis slowest)
    times the seeds (fastest)."""
    if not seeds:
        raise ConfigError("--seeds: need at least one seed")
    if any(a.key == SEED_KEY for a in axes):
        raise ConfigError("--grid run.seed: use --seeds K (seeds run.seed .. run.seed+K-1) instead")
    dims: list[list[tuple[tuple[str, str], ...]]] = [
        [((a.key, t),) for t in a.texts] for a in axes if not isinstance(a, ZipAxis)
    ]
    for group in _groups(axes):
        dims.append([tuple((a.key, a.texts[k]) for a in group) for k in range(len(group[0].texts))])
    combos = itertools.product(*dims)
    return [
        Cell(tuple(kv for part in combo for kv in part), seed) for combo in combos for seed in seeds
    ]
