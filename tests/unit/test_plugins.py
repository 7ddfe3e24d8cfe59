"""Aggregators and attacks by import path ``package.module:object``, as docs/extending.md shows."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from p2pfl.aggregators import make_aggregator
from p2pfl.attacks import make_attack
from p2pfl.config import load_scenario
from p2pfl.errors import ConfigError
from p2pfl.sim import simulate

pytestmark = pytest.mark.timeout(120)

DOC = Path(__file__).resolve().parents[2] / "docs" / "extending.md"
TINY = [
    "run.rounds=4",
    "run.eval_every=4",
    "topology.n=8",
    "byzantine.count=2",
    "model.params.hidden=[8]",
    "training.local_steps=2",
]


@pytest.fixture
def plugins(tmp_path: Path) -> Iterator[str]:
    """The doc's ``myexp/rules.py`` and ``myexp/attacks.py`` (under a unique package name),
    plus a NaN-sending attack, importable for the test."""
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    sources = {b.splitlines()[0].removeprefix("# myexp/"): b for b in blocks}
    assert set(sources) == {"rules.py", "attacks.py"}
    pkg = tmp_path / "myexp_p2pfl_test"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    for name, text in sources.items():
        (pkg / name).write_text(text)
    (pkg / "broken.py").write_text(
        "import torch\n\n\ndef nan(view):\n    return torch.full_like(view.own, float('nan'))\n"
    )
    sys.path.insert(0, str(tmp_path))
    try:
        yield pkg.name
    finally:
        sys.path.remove(str(tmp_path))
        for mod in [m for m in sys.modules if m.startswith(pkg.name)]:
            del sys.modules[mod]


def test_doc_rule_by_import_path_runs_like_the_registered_mean(plugins: str) -> None:
    base = [*TINY, "byzantine.attack=sign_flip"]
    mine = simulate(load_scenario(None, [*base, f"aggregator.name={plugins}.rules:scaled_mean"]))
    ref = simulate(load_scenario(None, [*base, "aggregator.name=mean"]))
    assert torch.allclose(mine.params, ref.params, atol=1e-5)


def test_doc_rule_spec_carries_its_least_number_of_inputs(plugins: str) -> None:
    agg = make_aggregator(f"{plugins}.rules:SCALED_MEAN", {"scale": 2.0})
    assert agg.min_inputs(2) == 5 and agg.summary == "mean times scale"
    plain = make_aggregator(f"{plugins}.rules:scaled_mean")
    assert plain.min_inputs(2) == 1
    with pytest.raises(ConfigError, match=r"aggregator\.params\.scael: unknown parameter"):
        make_aggregator(f"{plugins}.rules:scaled_mean", {"scael": 1.0})


def test_doc_attack_by_import_path(plugins: str) -> None:
    attack = make_attack(f"{plugins}.attacks:shifted", {"shift": 2.0})
    assert attack.kind == "vector"
    result = simulate(
        load_scenario(
            None,
            [*TINY, f"byzantine.attack={plugins}.attacks:shifted", "byzantine.params.shift=50.0"],
        )
    )
    assert result.final.honest_accuracy.numel() == 6
    with pytest.raises(ConfigError, match=r"byzantine\.params\.shfit: unknown parameter"):
        make_attack(f"{plugins}.attacks:shifted", {"shfit": 1.0})


def test_a_non_finite_crafted_vector_is_dropped_like_a_silent_sender(plugins: str) -> None:
    """NaN from an attacker reaches no rule: receivers drop it, as a node's boundary does."""
    base = [*TINY, "aggregator.name=median"]
    nan = simulate(load_scenario(None, [*base, f"byzantine.attack={plugins}.broken:nan"]))
    silent = simulate(load_scenario(None, [*base, "byzantine.attack=silent"]))
    honest = [i for i in range(8) if i not in nan.experiment.byzantine]
    assert not nan.diverged
    assert torch.equal(nan.params[honest], silent.params[honest])


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("aggregator.name", "no_such_module_p2pfl:rule", r"aggregator\.name: cannot import module"),
        ("byzantine.attack", "torch:no_such_thing", r"byzantine\.attack: module 'torch' has no"),
        ("aggregator.name", "torch:pi", r"aggregator\.name: 'torch:pi' is not callable"),
        ("byzantine.attack", "torch:", r"byzantine\.attack: 'torch:' is not of the form"),
    ],
)
def test_bad_import_paths_name_their_key(key: str, value: str, message: str) -> None:
    from p2pfl.experiment import build_experiment

    with pytest.raises(ConfigError, match=message):
        build_experiment(load_scenario(None, [*TINY, f"{key}={value}"]))
