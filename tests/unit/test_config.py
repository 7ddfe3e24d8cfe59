"""Scenario loading: defaults, overrides, and one clear error per kind of bad input."""

from __future__ import annotations

from pathlib import Path

import pytest

from p2pfl.config import Scenario, apply_overrides, load_scenario, parse_override, read_toml
from p2pfl.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def test_default_scenario_file_matches_embedded_default() -> None:
    from_file = load_scenario(ROOT / "sims" / "default.toml")
    assert from_file.to_dict() == Scenario().to_dict()


def test_overrides_parse_toml_values_and_nest() -> None:
    s = load_scenario(
        None,
        [
            "aggregator.name=krum",
            "model.params.hidden=[32, 16]",
            "training.lr=0.05",
            'aggregator.f="auto"',
            "byzantine.nodes=[1, 2]",
        ],
    )
    assert s.aggregator.name == "krum"
    assert s.model.params == {"hidden": [32, 16]}
    assert s.training.lr == pytest.approx(0.05)
    assert s.aggregator.f == "auto"
    assert s.byzantine.nodes == [1, 2]


def test_bare_word_override_is_a_string() -> None:
    assert parse_override("aggregator.name=trimmed_mean") == (
        ["aggregator", "name"],
        "trimmed_mean",
    )


def test_integer_accepted_where_float_expected() -> None:
    assert load_scenario(None, ["training.lr=1"]).training.lr == 1.0


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            "aggregator.nmae=median",
            "aggregator.nmae: unknown key; valid keys: f, name, params, pre",
        ),
        ("bogus.key=1", "bogus: unknown section"),
        ('training.lr="fast"', "training.lr: expected a number"),
        ("run.rounds=0", "run.rounds: must be >= 1"),
        ("run.rounds=true", "run.rounds: expected an integer"),
        ('aggregator.f="most"', "aggregator.f: expected int or 'auto'"),
        ('topology.mixing="magic"', "topology.mixing: expected one of"),
        ("training.momentum=1.5", "training.momentum: must be in [0, 1)"),
        ("data.test_fraction=0", "data.test_fraction: must be in (0, 1)"),
        ("byzantine.count=-1", "byzantine.count: must be >= 0"),
        ("model.params.hidden.deep=1", "model.params.hidden is a value, not a table"),
        ("noequals", "expected section.key=value"),
        ("=1", "expected section.key=value"),
    ],
)
def test_bad_values_name_the_key(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=_escape(message)):
        load_scenario(None, ["model.params.hidden=[8]", override])


def _escape(text: str) -> str:
    import re

    return re.escape(text)


def test_missing_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such scenario file"):
        read_toml(tmp_path / "absent.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[run\nrounds = 3\n")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_scenario(bad)
    with pytest.raises(ConfigError, match="is a directory"):
        load_scenario(tmp_path)


def test_section_must_be_a_table(tmp_path: Path) -> None:
    p = tmp_path / "s.toml"
    p.write_text('run = "fast"\n')
    with pytest.raises(ConfigError, match="run: expected a table"):
        load_scenario(p)


def test_relative_paths_resolve_against_the_scenario_file(tmp_path: Path) -> None:
    p = tmp_path / "s.toml"
    p.write_text('[topology]\nfile = "graphs/ring.toml"\n')
    s = load_scenario(p)
    assert s.resolve_path(s.topology.file) == tmp_path / "graphs" / "ring.toml"


def test_overrides_do_not_mutate_input() -> None:
    data = {"run": {"rounds": 3}}
    out = apply_overrides(data, ["run.rounds=5"])
    assert data == {"run": {"rounds": 3}}
    assert out == {"run": {"rounds": 5}}


# --- a changed name starts from its own defaults --------------------------------------

RVA = str(Path(__file__).resolve().parents[2] / "sims" / "experiments" / "rules-vs-attacks")


def test_changing_the_model_name_drops_the_old_models_params() -> None:
    from p2pfl.experiment import build_experiment

    scenario = load_scenario(None, ["model.name=cnn", "topology.n=6", "byzantine.count=0"])
    assert scenario.model.params == {}  # not the default mlp's {"hidden": [64]}
    assert build_experiment(scenario).model is not None
    file = f"{RVA}/scenario.toml"
    assert load_scenario(file, ["model.name=logreg"]).model.params == {}
    assert load_scenario(file, ["model.name=mlp"]).model.params == {"hidden": [32]}  # unchanged


@pytest.mark.parametrize(
    "overrides",
    [
        ["model.name=cnn", "model.params.channels=[4]"],
        ["model.params.channels=[4]", "model.name=cnn"],  # any order
    ],
)
def test_params_set_with_a_new_name_apply_on_top_of_its_defaults(overrides: list[str]) -> None:
    scenario = load_scenario(f"{RVA}/scenario.toml", overrides)
    assert scenario.model.params == {"channels": [4]}


def test_every_named_choice_resets_its_own_table(tmp_path: Path) -> None:
    file = tmp_path / "s.toml"
    file.write_text(
        '[byzantine]\nattack = "alie"\nparams = { z = 10.0 }\n'
        'placement = "around_victim"\nplacement_params = { victim = 1 }\n'
        '[aggregator]\nname = "clipped_gossip"\nparams = { tau = 0.1 }\n'
        '[topology]\nkind = "random_regular"\nparams = { degree = 6 }\n'
        '[data]\npartition = "dirichlet"\npartition_params = { alpha = 0.3 }\n'
    )
    s = load_scenario(
        file,
        [
            "byzantine.attack=ipm",
            "aggregator.name=trimmed_mean",
            "topology.kind=ring",
            "data.partition=iid",
        ],
    )
    assert s.byzantine.params == {} and s.aggregator.params == {}
    assert s.topology.params == {} and s.data.partition_params == {}
    assert s.byzantine.placement_params == {"victim": 1}  # placement itself unchanged
    kept = load_scenario(file, ["byzantine.attack=alie", "aggregator.params.tau=0.5"])
    assert kept.byzantine.params == {"z": 10.0} and kept.aggregator.params == {"tau": 0.5}


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("aggregator.name=krumm", "aggregator.name"),
        ("byzantine.attack=alei", "byzantine.attack"),
        ('aggregator.pre=["mmn"]', "aggregator.pre"),
        ("model.name=resnet", "model.name"),
        ("topology.kind=grid", "topology.kind"),
        ("byzantine.placement=nowhere", "byzantine.placement"),
        ("data.source=cifar", "data.source"),
        ("data.partition=even", "data.partition"),
    ],
)
def test_every_unknown_name_error_names_its_key(override: str, key: str) -> None:
    from p2pfl.experiment import build_experiment

    with pytest.raises(ConfigError) as info:
        build_experiment(load_scenario(None, [override]))
    assert str(info.value).startswith(f"{key}: unknown ")
