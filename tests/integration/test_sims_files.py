"""Every scenario file in ``sims/`` loads, builds, is documented and is indexed."""

from __future__ import annotations

from pathlib import Path

import pytest

from p2pfl.config import load_scenario
from p2pfl.experiment import build_experiment

SIMS = Path(__file__).resolve().parents[2] / "sims"
# Topology files (``topologies/`` folders) are inputs of scenarios, not scenarios.
SCENARIOS = sorted(
    p
    for p in SIMS.rglob("*.toml")
    if "topologies" not in p.relative_to(SIMS).parts and p.name != "topology.toml"
)
IDS = [str(p.relative_to(SIMS)) for p in SCENARIOS]


def test_the_issue_2_scenarios_exist() -> None:
    names = {p.name for p in SCENARIOS}
    for expected in (
        "default.toml",
        "baseline-gossip.toml",
        "baseline-median.toml",
        "signflip-mean.toml",
        "signflip-median.toml",
        "signflip-trimmed-mean.toml",
        "signflip-krum.toml",
        "alie-median.toml",
        "dirichlet-noniid.toml",
        "dumbbell.toml",
        "large-2048.toml",
    ):
        assert expected in names


@pytest.mark.timeout(120)
@pytest.mark.parametrize("path", SCENARIOS, ids=IDS)
def test_scenario_loads_and_builds(path: Path) -> None:
    scenario = load_scenario(path)
    exp = build_experiment(scenario)
    assert exp.n == (exp.topology.graph.number_of_nodes())
    assert len(exp.honest) >= 1
    if path.name == "large-2048.toml":
        assert exp.n == 2048


@pytest.mark.timeout(10)
@pytest.mark.parametrize("path", SCENARIOS, ids=IDS)
def test_scenario_is_documented_and_indexed(path: Path) -> None:
    lines = path.read_text().splitlines()
    comments = [line for line in lines[:12] if line.startswith("#")]
    assert len(comments) >= 2, "a scenario file starts with comments saying what it is"
    index = (SIMS / "README.md").read_text()
    assert str(path.relative_to(SIMS)) in index, "sims/README.md lists every scenario file"
