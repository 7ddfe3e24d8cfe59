"""The transfer experiment's table is what its command produces: pre-training and one cell
(pre-trained, convolutions frozen, no attack, seed 0) are run again and compared with the
committed ``results.md`` (to within one test sample of the 360 per class-filtered split)."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch

from p2pfl.config import load_scenario
from p2pfl.experiment import build_experiment
from p2pfl.sim import Simulation
from p2pfl.sim.outputs import sim_summary

HERE = Path(__file__).resolve().parents[2] / "sims" / "experiments" / "transfer"

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, HERE / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def committed(start: str, attack: str) -> list[float]:
    """Seed 0's values of a row of results.md, in column order."""
    for line in (HERE / "results.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if cells[:2] == [start, attack]:
            return [float(m) for m in re.findall(r"\((\d\.\d+) /", line)]
    raise AssertionError(f"no row {start!r}, {attack!r} in results.md")


def test_a_cell_reproduces_the_committed_table(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    sys.path.insert(0, str(HERE))
    try:
        pretrain = load("pretrain")
        run = load("run")
    finally:
        sys.path.remove(str(HERE))
    weights = tmp_path / "pretrained.pt"
    pretrain.pretrain(weights)
    overrides = [f"model.init={weights}", 'model.freeze=["0.*","3.*"]', "run.seed=0"]
    scenario = load_scenario(HERE / "scenario.toml", overrides)

    summary = sim_summary(Simulation(build_experiment(scenario)).run())

    want = committed("pre-trained, convs frozen", "none")
    got = [summary[f"{c}_{s}"] for c in run.COLUMNS for s in ("mean", "p10")]
    assert got == pytest.approx(want, abs=1 / 360 + 5e-4)  # results.md rounds to 3 digits
