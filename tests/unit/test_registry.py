"""Registries: unknown names list the valid ones; parameters are checked by name and type."""

from __future__ import annotations

import pytest

from p2pfl.errors import ConfigError, UnknownNameError
from p2pfl.registry import Registry, bind_parameters
from p2pfl.typecheck import coerce


def scaled(
    x: float, *, factor: float = 2.0, label: str = "a", sizes: list[int] | None = None
) -> float:
    return x * factor


def needs_k(x: float, *, k: int) -> float:
    return x + k


REG = Registry("widget", {"scaled": scaled, "needs_k": needs_k})


def test_unknown_name_lists_valid_names() -> None:
    with pytest.raises(UnknownNameError) as info:
        REG["scaeld"]
    assert str(info.value) == "unknown widget 'scaeld'; valid widgets: needs_k, scaled"
    assert isinstance(info.value, ConfigError)


def test_bind_checks_and_fixes_parameters() -> None:
    fn = REG.bind("scaled", {"factor": 3}, "w.params")
    assert fn(2.0) == 6.0
    assert REG.bind("scaled", {}, "w.params") is scaled
    assert REG.names() == ["needs_k", "scaled"] and "scaled" in REG and len(REG) == 2


def test_bind_rejects_misspelt_and_mistyped_parameters() -> None:
    with pytest.raises(
        ConfigError,
        match=r"w\.params\.factr: unknown parameter; valid parameters: factor, label, sizes",
    ):
        REG.bind("scaled", {"factr": 3}, "w.params")
    with pytest.raises(ConfigError, match=r"w\.params\.factor: expected a number, got 'x'"):
        REG.bind("scaled", {"factor": "x"}, "w.params")
    with pytest.raises(ConfigError, match=r"w\.params\.sizes\[1\]: expected an integer"):
        REG.bind("scaled", {"sizes": [1, 2.5]}, "w.params")
    with pytest.raises(ConfigError, match="missing required parameter"):
        bind_parameters(needs_k, {}, "w.params")


@pytest.mark.parametrize(
    ("value", "hint", "ok"),
    [
        (True, int, False),
        (1, float, True),
        (1.5, int, False),
        ("a", str, True),
        ([1, 2], tuple[int, ...], True),
        ("12", list[int], False),
        (None, int | None, True),
        ({"a": 1}, dict[str, int], True),
    ],
)
def test_coerce(value: object, hint: object, ok: bool) -> None:
    if ok:
        coerce(value, hint, "k")
    else:
        with pytest.raises(ConfigError, match=r"^k"):
            coerce(value, hint, "k")


def seeded(n: int, *, seed: int = 0, width: int = 1) -> int:
    return n + seed + width


def test_reserved_parameters_cannot_be_set() -> None:
    reg = Registry("builder", {"seeded": seeded})
    assert reg.bind("seeded", {"width": 2}, "t.params", reserved={"seed": "run.seed"})(1) == 3
    with pytest.raises(ConfigError, match=r"t\.params\.seed: set by run\.seed, not here"):
        reg.bind("seeded", {"seed": 3}, "t.params", reserved={"seed": "run.seed"})
