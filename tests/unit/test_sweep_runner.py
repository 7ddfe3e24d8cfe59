"""The sweep runner with a stand-in for the simulator: resume, failures, ids, checks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from p2pfl.config import load_scenario
from p2pfl.errors import ConfigError
from p2pfl.sweep.grid import expand, parse_grid
from p2pfl.sweep.runner import (
    PlannedCell,
    cell_id,
    execute_cell,
    load_cell,
    plan_sweep,
    run_sweep,
)

pytestmark = pytest.mark.timeout(60)

CALLS: list[str] = []


def fake_execute(payload: dict[str, Any]) -> dict[str, Any]:
    """Succeeds except for krum, whose 'f does not fit'."""
    CALLS.append(payload["id"])
    name = payload["scenario"]["aggregator"]["name"]
    if name == "krum":
        return {"status": "failed", "error": "aggregator.f: does not fit", "wall_seconds": 0.0}
    seed = payload["scenario"]["run"]["seed"]
    return {
        "status": "ok",
        "error": None,
        "wall_seconds": 0.01,
        "honest_accuracy_mean": 0.5 + 0.1 * seed,
        "honest_accuracy_min": 0.4,
    }


def planned_cells(rules: str = "mean,krum", seeds: tuple[int, ...] = (0, 1)) -> list[PlannedCell]:
    cells = expand(parse_grid([f"aggregator.name={rules}"]), list(seeds))
    out = []
    for c in cells:
        s = load_scenario(None, c.overrides)
        out.append(PlannedCell(c, s, cell_id(s)))
    return out


def test_cell_id_is_stable_and_depends_on_every_value() -> None:
    a = load_scenario(None, ["aggregator.name=krum"])
    assert cell_id(a) == cell_id(load_scenario(None, ["aggregator.name=krum"]))
    assert len(cell_id(a)) == 16
    assert cell_id(a) != cell_id(load_scenario(None, ["aggregator.name=krum", "run.seed=1"]))
    assert cell_id(a) != cell_id(load_scenario(None, ["aggregator.name=krum", "training.lr=0.2"]))


def test_runs_every_cell_then_a_rerun_skips_them_all(tmp_path: Path) -> None:
    planned = planned_cells()
    CALLS.clear()
    seen: list[tuple[str, bool]] = []
    first = run_sweep(
        planned,
        tmp_path,
        jobs=1,
        execute=fake_execute,
        on_done=lambda r, s: seen.append((r["cell"], s)),
    )
    assert len(CALLS) == 4 and first.ran == 4 and first.skipped == 0 and first.failed == 2
    assert sorted(p.name for p in (tmp_path / "cells").iterdir()) == sorted(
        f"{p.id}.json" for p in planned
    )
    assert [s for _, s in seen] == [False] * 4
    stored = json.loads((tmp_path / "cells" / f"{planned[0].id}.json").read_text())
    assert stored["values"] == {"aggregator.name": "mean"} and stored["seed"] == 0
    assert stored["scenario"]["aggregator"]["name"] == "mean"

    CALLS.clear()
    seen.clear()
    again = run_sweep(
        planned,
        tmp_path,
        jobs=1,
        execute=fake_execute,
        on_done=lambda r, s: seen.append((r["cell"], s)),
    )
    assert CALLS == [] and again.skipped == 4 and again.ran == 0
    assert [r["cell"] for r in again.records] == [p.id for p in planned]
    assert [r["honest_accuracy_mean"] for r in again.records if r["status"] == "ok"] == [0.5, 0.6]
    assert all(s for _, s in seen)


def test_retry_failed_reruns_only_failed_cells(tmp_path: Path) -> None:
    planned = planned_cells()
    run_sweep(planned, tmp_path, jobs=1, execute=fake_execute)
    CALLS.clear()
    out = run_sweep(planned, tmp_path, jobs=1, retry_failed=True, execute=fake_execute)
    krum = {p.id for p in planned if p.scenario.aggregator.name == "krum"}
    assert set(CALLS) == krum and out.skipped == 2 and out.ran == 2


def test_extended_grid_reuses_finished_cells(tmp_path: Path) -> None:
    run_sweep(planned_cells("mean", (0,)), tmp_path, jobs=1, execute=fake_execute)
    CALLS.clear()
    out = run_sweep(planned_cells("mean,median", (0, 1)), tmp_path, jobs=1, execute=fake_execute)
    assert len(CALLS) == 3 and out.skipped == 1


def test_unreadable_cell_file_is_run_again(tmp_path: Path) -> None:
    planned = planned_cells("mean", (0,))
    (tmp_path / "cells").mkdir()
    (tmp_path / "cells" / f"{planned[0].id}.json").write_text("{not json")
    assert load_cell(tmp_path, planned[0].id) is None
    CALLS.clear()
    out = run_sweep(planned, tmp_path, jobs=1, execute=fake_execute)
    assert len(CALLS) == 1 and out.ran == 1
    assert load_cell(tmp_path, planned[0].id) is not None


@pytest.mark.parametrize("jobs", [0, -1, True])
def test_bad_jobs_is_a_config_error(tmp_path: Path, jobs: Any) -> None:
    with pytest.raises(ConfigError, match="--jobs"):
        run_sweep(planned_cells(), tmp_path, jobs=jobs, execute=fake_execute)


def test_plan_rejects_unknown_keys_bad_values_and_seeds_before_running() -> None:
    with pytest.raises(ConfigError, match=r"aggregator\.nmae: unknown key"):
        plan_sweep(None, parse_grid(["aggregator.nmae=mean,median"]))
    with pytest.raises(ConfigError, match=r"run\.rounds"):
        plan_sweep(None, parse_grid(["run.rounds=2,0"]))
    with pytest.raises(ConfigError, match="--seeds"):
        plan_sweep(None, [], seeds=0)
    with pytest.raises(ConfigError, match="no such scenario file"):
        plan_sweep("/nonexistent/x.toml", [])


def test_plan_rejects_two_cells_that_are_the_same_scenario() -> None:
    with pytest.raises(ConfigError, match="same scenario"):
        plan_sweep(None, parse_grid(["training.lr=1,1.0"]))


def test_execute_cell_reports_a_build_error_as_a_failed_run() -> None:
    scenario = load_scenario(None, ["aggregator.name=krum", "aggregator.f=3"])
    out = execute_cell({"id": "x", "scenario": scenario.to_dict(), "base_dir": "."})
    assert out["status"] == "failed"
    assert "aggregator.f: krum with f=3 needs at least 9 vectors" in out["error"]
    assert out["wall_seconds"] >= 0.0


def test_a_diverging_cell_is_recorded_with_its_collapsed_accuracy() -> None:
    """The worst cells of a heatmap are the ones where the attack wins: they must not go missing."""
    scenario = load_scenario(
        None,
        [
            "run.rounds=30",
            "topology.n=8",
            "byzantine.count=2",
            "model.params.hidden=[8]",
            "aggregator.name=mean",
            "byzantine.attack=scaled",
            "byzantine.params.lam=1e6",
        ],
    )
    out = execute_cell({"id": "x", "scenario": scenario.to_dict(), "base_dir": "."})
    assert out["status"] == "ok" and out["error"] is None
    assert out["diverged"] == 6 and len(out["diverged_nodes"]) == 6
    assert out["honest_accuracy_mean"] == pytest.approx(0.1)
    assert out["honest_accuracy_min"] == pytest.approx(0.1)
