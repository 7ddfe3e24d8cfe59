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
