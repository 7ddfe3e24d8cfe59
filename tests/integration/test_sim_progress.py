"""``p2pfl sim`` as a long job: progress lines in logs, metrics as it goes, Ctrl-C keeps them."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ARGS = [
    "--set", "topology.n=8",
    "--set", "byzantine.count=2",
    "--set", "model.params.hidden=[8]",
    "--set", "training.local_steps=1",
    "--set", "run.eval_every=1",
]  # fmt: skip


def start(out: Path, rounds: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "p2pfl",
            "sim",
            *ARGS,
            "--set",
            f"run.rounds={rounds}",
            "--out",
            str(out),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.timeout(120)
def test_log_lines_per_evaluation_with_eta(run_dir: Path) -> None:
    out = run_dir / "run"
    proc = start(out, 4)
    stdout, stderr = proc.communicate(timeout=100)
    assert proc.returncode == 0, stderr
    lines = [line for line in stdout.splitlines() if line.startswith("round ")]
    assert [line.split()[1] for line in lines] == ["1/4", "2/4", "3/4", "4/4"]
    assert all("honest acc mean" in line and " min " in line and "ETA" in line for line in lines)
    assert f"outputs in {out}" in stdout.splitlines()[0]


@pytest.mark.timeout(180)
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_stopped_run_keeps_its_metrics_and_says_so(run_dir: Path, signum: int) -> None:
    out = run_dir / "run"
    proc = start(out, 100_000)
    assert proc.stdout is not None
    first = proc.stdout.readline()
    assert f"outputs in {out}" in first
    assert out.is_dir()  # the output directory exists before the first round
    evaluated: list[str] = []
    while len(evaluated) < 3:
        line = proc.stdout.readline()
        assert line, proc.stderr.read() if proc.stderr else ""
        if line.startswith("round "):
            evaluated.append(line)
            # appended as each round is evaluated: 8 records per evaluation
            assert len((out / "metrics.jsonl").read_text().splitlines()) >= 8 * len(evaluated)
    proc.send_signal(signum)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signum
    assert f"stopped by {signal.Signals(signum).name}" in stderr
    assert "Traceback" not in stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["interrupted"] is True
    assert 3 <= summary["rounds"] < 100_000
    records = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(records) == 8 * len(summary["history"]) >= 24
    assert max(r["round"] for r in records) == summary["rounds"]


@pytest.mark.timeout(120)
def test_the_terminal_bar_shows_an_eta(run_dir: Path) -> None:
    import os
    import pty

    primary, secondary = pty.openpty()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "p2pfl",
            "sim",
            *ARGS,
            "--set",
            "run.rounds=3",
            "--out",
            str(run_dir / "run"),
        ],
        stdout=secondary,
        stderr=secondary,
        env={**os.environ, "COLUMNS": "160", "TERM": "xterm"},
    )
    os.close(secondary)
    chunks = []
    while True:
        try:
            data = os.read(primary, 4096)
        except OSError:  # the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(primary)
    assert proc.wait(timeout=60) == 0
    text = b"".join(chunks).decode(errors="replace")
    assert "ETA" in text and "3/3" in text
    assert "round 1/3" not in text  # lines are for logs, the bar for terminals
