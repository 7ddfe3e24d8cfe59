"""The attack calling convention: AttackView checks, ATTACKS, make_attack, Attack."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

import p2pfl.attacks as attacks
from p2pfl.attacks import ATTACKS, Attack, AttackSpec, AttackView, make_attack
from p2pfl.errors import ConfigError, UnknownNameError

pytestmark = pytest.mark.timeout(30)

D = 4


def view_kwargs(h: int = 3, t: int = 2, d: int = D) -> dict[str, object]:
    g = torch.Generator().manual_seed(0)
    return {
        "own": torch.ones(d),
        "honest": torch.arange(h * d, dtype=torch.float32).reshape(h, d),
        "targets": torch.zeros(t, d),
        "target_weights": torch.full((t,), 0.25),
        "target_pull": torch.ones(t, d),
        "target_byzantine_weight": torch.full((t,), 0.25),
        "n": 5,
        "f": 1,
        "generator": g,
    }


def test_public_api_is_all() -> None:
    assert sorted(attacks.__all__) == sorted(
        [
            "ATTACKS",
            "Attack",
            "AttackKind",
            "AttackSpec",
            "AttackView",
            "Needs",
            "alie_z",
            "apply_trigger",
            "attack_success_rate",
            "make_attack",
        ]
    )
    for name in attacks.__all__:
        assert hasattr(attacks, name)


def test_registry_names_and_kinds() -> None:
    expected = {
        "sign_flip": "vector",
        "gaussian": "vector",
        "scaled": "vector",
        "random": "vector",
        "zero": "vector",
        "silent": "silent",
        "alie": "vector",
        "ipm": "vector",
        "min_max": "vector",
        "min_sum": "vector",
        "fang_median": "vector",
        "fang_trimmed_mean": "vector",
        "dissensus": "vector",
        "mimic": "vector",
        "label_flip": "data",
        "backdoor": "data",
    }
    assert ATTACKS.names() == sorted(expected)
    for name, kind in expected.items():
        spec = ATTACKS[name]
        assert isinstance(spec, AttackSpec)
        assert spec.kind == kind
        assert spec.summary


def test_view_accepts_consistent_shapes_including_empty() -> None:
    view = AttackView(**view_kwargs(h=0, t=0))  # type: ignore[arg-type]
    assert view.d == D
    assert view.honest.shape == (0, D)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("own", torch.ones(2, D), "AttackView.own"),
        ("own", torch.ones(D, dtype=torch.int64), "float tensor"),
        ("honest", torch.ones(3, D + 1), "AttackView.honest"),
        ("honest", torch.ones(D), "AttackView.honest"),
        ("targets", torch.ones(2, D - 1), "AttackView.targets"),
        ("target_weights", torch.ones(3), "AttackView.target_weights"),
        ("target_pull", torch.ones(3, D), "AttackView.target_pull"),
        ("target_byzantine_weight", torch.ones(1), "AttackView.target_byzantine_weight"),
        ("n", 0, "AttackView.n"),
        ("n", True, "AttackView.n"),
        ("f", -1, "AttackView.f"),
        ("f", 1.0, "AttackView.f"),
        ("generator", 0, "AttackView.generator"),
        ("honest", [[1.0] * D], "AttackView.honest"),
    ],
)
def test_view_rejects_inconsistent_fields(field: str, value: object, message: str) -> None:
    kwargs = view_kwargs()
    kwargs[field] = value
    with pytest.raises(ValueError, match=message):
        AttackView(**kwargs)  # type: ignore[arg-type]


def test_view_is_frozen() -> None:
    view = AttackView(**view_kwargs())  # type: ignore[arg-type]
    with pytest.raises(AttributeError):
        view.n = 3  # type: ignore[misc]


def test_make_attack_binds_and_freezes_parameters() -> None:
    attack = make_attack("sign_flip", {"scale": 3})
    assert isinstance(attack, Attack)
    assert attack.name == "sign_flip"
    assert attack.kind == "vector"
    assert attack.parameters == {"scale": 3.0}
    assert isinstance(attack.parameters["scale"], float)
    view = AttackView(**view_kwargs())  # type: ignore[arg-type]
    assert torch.equal(attack.craft(view), -3.0 * torch.ones(D))
    with pytest.raises(AttributeError):
        attack.name = "zero"  # type: ignore[misc]
    assert hash(attack) == hash(make_attack("sign_flip", {"scale": 3.0}))


def test_make_attack_defaults_when_no_params() -> None:
    assert make_attack("gaussian").parameters == {}
    assert make_attack("gaussian", {}).kind == "vector"


def test_make_attack_unknown_name_lists_valid_names() -> None:
    with pytest.raises(UnknownNameError, match=r"valid attacks: .*sign_flip"):
        make_attack("sign_flop", {})


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        ("gaussian", {"sigm": 1.0}, r"byzantine\.params\.sigm: unknown parameter"),
        ("gaussian", {"sigma": "big"}, r"byzantine\.params\.sigma: expected a number"),
        ("gaussian", {"sigma": -0.5}, "sigma must be >= 0"),
        ("sign_flip", {"scale": 0.0}, "scale must be > 0"),
        ("scaled", {"lam": float("inf")}, "lam must be finite"),
        ("random", {"a": -1.0}, "a must be >= 0"),
        ("alie", {"z": float("nan")}, "z must be finite"),
        ("ipm", {"eps": 0.0}, "eps must be > 0"),
        ("dissensus", {"eps": -1.0}, "eps must be > 0"),
        ("min_max", {"perturbation": "nope"}, "perturbation"),
        ("min_sum", {"tol": 0.0}, "tol must be in"),
        ("fang_median", {"b": 1.0}, "b must be > 1"),
        ("fang_trimmed_mean", {"reference": "global"}, "reference"),
        ("mimic", {"index": -1}, "index must be >= 0"),
        ("backdoor", {"fraction": 1.5}, "fraction must be in"),
        ("backdoor", {"target": -2}, "target must be"),
        ("backdoor", {"size": 0}, "size must be"),
        ("zero", {"scale": 1.0}, "unknown parameter"),
    ],
)
def test_make_attack_rejects_bad_parameters(
    name: str, params: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        make_attack(name, params)


def test_make_attack_names_the_section() -> None:
    with pytest.raises(ConfigError, match=r"^attack\.params\.sigma"):
        make_attack("gaussian", {"sigma": "x"}, where="attack.params")


def test_craft_refuses_non_vector_kinds() -> None:
    view = AttackView(**view_kwargs())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="kind 'silent'"):
        make_attack("silent").craft(view)
    with pytest.raises(ValueError, match="kind 'data'"):
        make_attack("label_flip").craft(view)


def test_poison_refuses_non_data_kinds() -> None:
    g = torch.Generator().manual_seed(0)
    with pytest.raises(ValueError, match="not 'data'"):
        make_attack("zero").poison(torch.zeros(2, 3), torch.zeros(2, dtype=torch.int64), 2, g)


def test_poison_runs_data_attack() -> None:
    g = torch.Generator().manual_seed(0)
    x, y = make_attack("label_flip").poison(torch.zeros(3, 2), torch.tensor([0, 1, 2]), 3, g)
    assert torch.equal(y, torch.tensor([2, 1, 0]))
    assert x.shape == (3, 2)


def test_attack_checks_crafted_shape() -> None:
    bad = AttackSpec(lambda view: torch.zeros(view.d + 1), "vector", "wrong shape")
    attack = Attack(name="bad", spec=bad)
    view = AttackView(**view_kwargs())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"returned shape \(5,\)"):
        attack.craft(view)


def test_spec_rejects_unknown_kind() -> None:
    with pytest.raises(ValueError, match=r"AttackSpec\.kind"):
        AttackSpec(lambda view: view.own, "loud", "x")  # type: ignore[arg-type]


def test_silent_spec_sends_no_rows() -> None:
    view = AttackView(**view_kwargs())  # type: ignore[arg-type]
    assert ATTACKS["silent"].craft(view).shape == (0, D)


def test_readme_attack_table_lists_every_attack_and_what_it_needs() -> None:
    """The README's table is the user's reference: it must match the registry."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    rows = re.findall(r"^\| (`.+?`) \| .+? \| (.+?) \|$", readme, flags=re.M)
    needs = {}
    for names, need in rows:
        for name in re.findall(r"`(\w+)`", names):
            needs[name] = need
    assert set(needs) == set(ATTACKS)
    for name in ATTACKS:
        assert needs[name] == ATTACKS[name].needs.text, name
