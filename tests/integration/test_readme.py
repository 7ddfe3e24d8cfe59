"""The README's quick-start commands work as written.

The set-up command is the one `.ci/run` executes (so CI proves it on a clean
clone); the main-job command is run here for real and must reach the accuracy the
README promises; the test command is the one `.ci/run` runs.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def quick_start_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return [block.strip() for block in re.findall(r"```bash\n(.*?)```", section, re.S)]


def test_readme_has_exactly_setup_main_and_test_commands() -> None:
    setup, main_job, tests = quick_start_commands()
    ci = (ROOT / ".ci" / "run").read_text()
    assert setup in ci, "the README's set-up command must be what CI runs"
    assert setup.startswith("pip install torch==2.13.0")
    assert main_job.startswith("p2pfl sim")
    assert tests in ci, "the README's test command must be what CI runs"


@pytest.mark.timeout(600)
def test_main_job_runs_and_reaches_promised_accuracy(tmp_path: Path) -> None:
    _, main_job, _ = quick_start_commands()
    argv = shlex.split(main_job)
    assert argv[0] == "p2pfl"
    proc = subprocess.run(
        [sys.executable, "-m", "p2pfl", *argv[1:]],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = tmp_path / argv[argv.index("--out") + 1]
    for name in ("metrics.jsonl", "summary.json", "accuracy.png", "topology.png"):
        assert (out / name).stat().st_size > 0, name
    summary = json.loads((out / "summary.json").read_text())
    assert summary["honest_accuracy_mean"] >= 0.90
    assert summary["rounds"] == 50
    assert summary["scenario"]["aggregator"]["name"] == "median"
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 16 * 25  # 16 nodes x 25 evaluation rounds (every 2 of 50)
    assert "final honest accuracy" in proc.stdout


def tour_blocks() -> list[tuple[str, str]]:
    """Every other command block of the README: (language, code)."""
    text = (ROOT / "README.md").read_text()
    rest = text.split("## Quick start", 1)[1].split("\n## ", 1)[1]
    return re.findall(r"```(bash|python)\n(.*?)```", rest, re.S)


def test_tour_has_commands_for_each_use() -> None:
    code = "\n".join(c for _, c in tour_blocks())
    for needle in (
        "p2pfl launch",
        "p2pfl keys generate",
        "p2pfl report",
        "p2pfl sweep",
        "simulate(",
    ):
        assert needle in code


@pytest.mark.timeout(900)
def test_every_tour_command_works_as_written(tmp_path: Path) -> None:
    for name in ("sims", "topologies"):
        (tmp_path / name).symlink_to(ROOT / name)
    for lang, code in tour_blocks():
        if lang == "bash":
            proc = subprocess.run(
                ["bash", "-e", "-c", code],
                cwd=tmp_path,
                capture_output=True,
                text=True,
                timeout=600,
            )
        else:
            proc = subprocess.run(
                [sys.executable, "-c", code],
                cwd=tmp_path,
                capture_output=True,
                text=True,
                timeout=600,
            )
        assert proc.returncode == 0, f"{code}\n---\n{proc.stderr[-3000:]}"
    summary = json.loads((tmp_path / "runs" / "mynet" / "summary.json").read_text())
    assert summary["honest_accuracy_mean"] > 0.8
    assert summary["missing_nodes"] == []  # both hosts' launches made it into the merge
    assert (tmp_path / "runs" / "sweep" / "results.csv").read_text().count("\n") == 1 + 3 * 2 * 2
    assert (tmp_path / "runs" / "alie-64" / "summary.json").exists()
