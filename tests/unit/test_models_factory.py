"""build_model: seeding without the global RNG, import-path factories, initial weights."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from p2pfl.errors import ConfigError
from p2pfl.models import build_model, import_factory
from p2pfl.params import flatten

pytestmark = pytest.mark.timeout(60)

DIGITS = (1, 8, 8)


def test_same_seed_same_weights_and_global_rng_untouched() -> None:
    torch.manual_seed(1234)
    before = torch.random.get_rng_state()
    a = flatten(build_model("mlp", {"hidden": [16]}, DIGITS, 10, seed=5))
    b = flatten(build_model("mlp", {"hidden": [16]}, DIGITS, 10, seed=5))
    c = flatten(build_model("mlp", {"hidden": [16]}, DIGITS, 10, seed=6))
    assert torch.equal(torch.random.get_rng_state(), before)
    assert torch.equal(a, b) and not torch.equal(a, c)


MODULE = """
from torch import nn

def tiny(input_shape, num_classes, *, width: int = 3):
    size = 1
    for s in input_shape:
        size *= s
    return nn.Sequential(nn.Flatten(), nn.Linear(size, width), nn.Linear(width, num_classes))

def not_a_module(input_shape, num_classes):
    return "model"

def wrong_output(input_shape, num_classes):
    return nn.Flatten()

def broken(input_shape, num_classes):
    raise RuntimeError("boom")

def fixed(input_shape, num_classes):
    return nn.Linear(20, num_classes)

def positional_only(input_shape, num_classes, /):
    return nn.Linear(20, num_classes)

def double(input_shape, num_classes):
    return nn.Sequential(nn.Flatten(), nn.Linear(64, num_classes)).double()

NOT_CALLABLE = 3
"""


@pytest.fixture
def user_module(tmp_path: Path) -> Iterator[str]:
    name = f"user_models_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(MODULE))
    sys.path.insert(0, str(tmp_path))
    try:
        yield name
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop(name, None)


def test_import_path_factory(user_module: str) -> None:
    model = build_model(f"{user_module}:tiny", {"width": 7}, DIGITS, 10, seed=0)
    linear = list(model.children())[1]
    assert isinstance(linear, torch.nn.Linear) and linear.out_features == 7
    assert model(torch.rand(2, *DIGITS)).shape == (2, 10)
    again = build_model(f"{user_module}:tiny", {"width": 7}, DIGITS, 10, seed=0)
    assert torch.equal(flatten(model), flatten(again))


@pytest.mark.parametrize(
    ("target", "params", "match"),
    [
        ("no_such_module_xyz:tiny", {}, "cannot import module 'no_such_module_xyz'"),
        ("{m}:missing", {}, "has no attribute 'missing'"),
        ("{m}:NOT_CALLABLE", {}, "is not callable"),
        ("{m}:not_a_module", {}, "returned str, not an nn.Module"),
        ("{m}:wrong_output", {}, r"expected \(2, 10\) logits"),
        ("{m}:broken", {}, "factory failed: RuntimeError: boom"),
        ("{m}:double", {}, "must be float32"),
        (
            "{m}:tiny",
            {"depth": 2},
            "model.params.depth: unknown parameter; valid parameters: width",
        ),
        ("{m}:tiny", {"num_classes": 2}, "model.params.num_classes: set by the dataset"),
        ("{m}:positional_only", {}, "must accept input_shape=..., num_classes=..."),
        ("{m}:", {}, "form 'package.module:factory'"),
        ("{m}:tiny", {"width": "wide"}, r"model.params.width: expected an integer"),
        (":tiny", {}, "form 'package.module:factory'"),
    ],
)
def test_import_path_errors(
    user_module: str, target: str, params: dict[str, object], match: str
) -> None:
    with pytest.raises(ConfigError, match=match):
        build_model(target.format(m=user_module), params, DIGITS, 10, seed=0)


def test_import_of_a_broken_module(tmp_path: Path) -> None:
    (tmp_path / "broken_user_mod_p2pfl.py").write_text("raise RuntimeError('bad module')\n")
    sys.path.insert(0, str(tmp_path))
    try:
        with pytest.raises(ConfigError, match="importing 'broken_user_mod_p2pfl' failed: Runtime"):
            build_model("broken_user_mod_p2pfl:f", {}, DIGITS, 10, seed=0)
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("broken_user_mod_p2pfl", None)


def test_import_factory_resolves_dotted_attributes() -> None:
    assert import_factory("torch.nn:Linear") is torch.nn.Linear


def test_wrong_input_shape_is_reported(user_module: str) -> None:
    with pytest.raises(ConfigError, match=r"cannot take inputs of shape \(1, 8, 8\)"):
        build_model(f"{user_module}:fixed", {}, DIGITS, 10, seed=0)


# --- initial weights ---------------------------------------------------------------------


def saved(tmp_path: Path, state: object, name: str = "w.pt") -> str:
    path = tmp_path / name
    torch.save(state, path)
    return str(path)


def test_initial_weights_are_loaded(tmp_path: Path) -> None:
    source = build_model("mlp", {"hidden": [8]}, DIGITS, 10, seed=99)
    path = saved(tmp_path, source.state_dict())
    model = build_model("mlp", {"hidden": [8]}, DIGITS, 10, seed=0, init_path=path)
    assert torch.equal(flatten(model), flatten(source))
    assert not torch.equal(
        flatten(model), flatten(build_model("mlp", {"hidden": [8]}, DIGITS, 10, seed=0))
    )


def test_initial_weights_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="weights file not found"):
        build_model("logreg", {}, DIGITS, 10, seed=0, init_path=str(tmp_path / "none.pt"))


def test_initial_weights_corrupt_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.pt"
    path.write_bytes(b"\x00garbage" * 10)
    with pytest.raises(ConfigError, match="not a readable PyTorch weights file"):
        build_model("logreg", {}, DIGITS, 10, seed=0, init_path=str(path))
    good = Path(saved(tmp_path, build_model("logreg", {}, DIGITS, 10, seed=0).state_dict()))
    good.write_bytes(good.read_bytes()[:100])
    with pytest.raises(ConfigError, match="not a readable PyTorch weights file"):
        build_model("logreg", {}, DIGITS, 10, seed=0, init_path=str(good))


def test_initial_weights_refuse_pickled_objects(tmp_path: Path) -> None:
    path = saved(tmp_path, build_model("logreg", {}, DIGITS, 10, seed=0))  # a whole module
    with pytest.raises(ConfigError, match="not a readable PyTorch weights file"):
        build_model("logreg", {}, DIGITS, 10, seed=0, init_path=path)


def test_initial_weights_not_a_state_dict(tmp_path: Path) -> None:
    path = saved(tmp_path, [torch.zeros(3)])
    with pytest.raises(ConfigError, match="must hold a state dict"):
        build_model("logreg", {}, DIGITS, 10, seed=0, init_path=path)


def test_initial_weights_mismatch_names_keys(tmp_path: Path) -> None:
    state = build_model("logreg", {}, DIGITS, 10, seed=0).state_dict()
    changed = {k: v for k, v in state.items() if k != "1.bias"} | {"extra": torch.zeros(1)}
    path = saved(tmp_path, changed)
    with pytest.raises(ConfigError, match=r"missing keys: 1.bias.*unexpected keys: extra"):
        build_model("logreg", {}, DIGITS, 10, seed=0, init_path=path)
    wide = build_model("logreg", {}, DIGITS, 12, seed=0).state_dict()
    path = saved(tmp_path, wide, "wide.pt")
    with pytest.raises(ConfigError, match=r"shape mismatch: 1.weight \(12, 64\) != \(10, 64\)"):
        build_model("logreg", {}, DIGITS, 10, seed=0, init_path=path)


def test_initial_weights_non_finite(tmp_path: Path) -> None:
    state = build_model("logreg", {}, DIGITS, 10, seed=0).state_dict()
    state["1.bias"][0] = float("nan")
    path = saved(tmp_path, state)
    with pytest.raises(ConfigError, match=r"'1\.bias' holds NaN"):
        build_model("logreg", {}, DIGITS, 10, seed=0, init_path=path)
