"""``p2pfl sweep --executor ray``: the local executor's outputs from Ray tasks.

The Ray test starts a local Ray (``--executor ray`` without ``--address``) and the
sweep stops it; it is skipped only where Ray is not installed (the optional extra
``ray``). The install hint is checked everywhere.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import pytest

from p2pfl.cli.main import main

DEFAULT = str(Path(__file__).resolve().parents[2] / "sims" / "default.toml")
SWEEP = ["sweep", DEFAULT, "--grid", "aggregator.name=mean,median", "--set", "run.rounds=5"]
TIMES = {"wall_seconds"}


def table(path: Path) -> list[dict[str, str]]:
    with path.open() as fh:
        return [{k: v for k, v in row.items() if k not in TIMES} for row in csv.DictReader(fh)]


def test_without_ray_the_flag_says_how_to_install_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prepare: `import ray` fails as where the extra is not installed
    monkeypatch.setitem(sys.modules, "ray", None)
    # Execute
    code = main([*SWEEP, "--executor", "ray", "--out", str(tmp_path / "s")])
    # Assert
    assert code == 2
    err = capsys.readouterr().err
    assert 'pip install -e ".[ray]"' in err
    assert not (tmp_path / "s" / "cells").exists()


def test_address_without_ray_executor_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main([*SWEEP, "--address", "auto", "--out", str(tmp_path / "s")])
    assert code == 2
    assert "--address: only with --executor ray" in capsys.readouterr().err


@pytest.mark.timeout(300)
def test_ray_tasks_give_the_local_results_and_resume(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ray = pytest.importorskip("ray")
    # Prepare
    local, remote = tmp_path / "local", tmp_path / "ray"
    # Execute
    assert main([*SWEEP, "--executor", "local", "--jobs", "2", "--out", str(local)]) == 0
    assert main([*SWEEP, "--executor", "ray", "--jobs", "2", "--out", str(remote)]) == 0
    first = capsys.readouterr().out
    # Assert: the same rows, numbers included, and the same cells
    assert "Ray tasks on a local Ray with 2 CPUs" in first
    assert not ray.is_initialized()  # the sweep stopped the Ray it started
    rows = table(remote / "results.csv")
    assert len(rows) == 2 and all(r["status"] == "ok" for r in rows)
    assert rows == table(local / "results.csv")
    for cell in (local / "cells").glob("*.json"):
        a = json.loads(cell.read_text())
        b = json.loads((remote / "cells" / cell.name).read_text())
        a.pop("wall_seconds"), b.pop("wall_seconds")
        assert a == b
    assert (remote / "heatmap.png").read_bytes()[:4] == b"\x89PNG"
    # resume: a second Ray run finds both cells done and starts nothing
    assert main([*SWEEP, "--executor", "ray", "--jobs", "2", "--out", str(remote)]) == 0
    assert "skipping 2 already finished" in capsys.readouterr().out
    assert table(remote / "results.csv") == rows
