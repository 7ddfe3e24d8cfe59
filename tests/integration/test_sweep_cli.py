"""``p2pfl sweep`` end to end on tiny scenarios: outputs, resume, failures, placements."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from p2pfl.cli.main import main
from p2pfl.config import load_scenario, scenario_from_dict
from p2pfl.experiment import build_experiment, build_topology
from p2pfl.sweep import parse_grid, plan_sweep, run_sweep

TINY = [
    "--set", "run.rounds=3",
    "--set", "run.eval_every=3",
    "--set", "topology.n=8",
    "--set", "topology.params.degree=4",
    "--set", "byzantine.count=2",
    "--set", "model.params.hidden=[8]",
    "--set", "training.local_steps=2",
]  # fmt: skip
DEFAULT = str(Path(__file__).resolve().parents[2] / "sims" / "default.toml")


def rows(path: Path) -> list[dict[str, str]]:
    with path.open() as fh:
        return list(csv.DictReader(fh))


@pytest.mark.timeout(240)
def test_parallel_sweep_writes_outputs_and_rerun_skips(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "sweep"
    argv = [
        "sweep", DEFAULT, *TINY,
        "--grid", "aggregator.name=mean,median",
        "--grid", "byzantine.attack=sign_flip,alie",
        "--seeds", "2", "--jobs", "2", "--out", str(out),
    ]  # fmt: skip
    assert main(argv) == 0
    first = capsys.readouterr().out
    assert "skipping 0 already finished" in first
    table = rows(out / "results.csv")
    assert len(table) == 2 * 2 * 2
    assert {r["aggregator.name"] for r in table} == {"mean", "median"}
    assert {r["seed"] for r in table} == {"0", "1"}
    assert all(r["status"] == "ok" and 0.0 <= float(r["honest_accuracy_min"]) <= 1.0 for r in table)
    assert all(float(r["honest_accuracy_min"]) <= float(r["honest_accuracy_mean"]) for r in table)
    assert len(list((out / "cells").glob("*.json"))) == 8
    assert (out / "heatmap.png").read_bytes()[:4] == b"\x89PNG"
    md = (out / "results.md").read_text()
    assert md.count("\n| mean |") == 2 and md.count("\n| median |") == 2
    assert json.loads((out / "sweep.json").read_text())["seeds"] == [0, 1]

    assert main(argv) == 0
    again = capsys.readouterr().out
    assert "skipping 8 already finished" in again
    assert "8 skipped (already finished), 0 run" in again
    assert rows(out / "results.csv") == table

    # The same cells run in this process (jobs=1) give the same numbers: workers are
    # deterministic and the pool changes nothing but where the work happens.
    inline = run_sweep(
        plan_sweep(
            DEFAULT, parse_grid(["aggregator.name=median", "byzantine.attack=alie"]), TINY[1::2]
        ),
        tmp_path / "inline",
        jobs=1,
    )
    same = [
        r
        for r in table
        if r["aggregator.name"] == "median" and r["byzantine.attack"] == "alie" and r["seed"] == "0"
    ]
    assert float(same[0]["honest_accuracy_mean"]) == pytest.approx(
        inline.records[0]["honest_accuracy_mean"], abs=1e-6
    )


@pytest.mark.timeout(120)
def test_a_cell_whose_f_does_not_fit_is_recorded_and_the_sweep_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "s"
    argv = [
        "sweep", DEFAULT, *TINY, "--set", "aggregator.f=2",
        "--grid", "aggregator.name=median,krum",
        "--jobs", "1", "--out", str(out), "--quiet",
    ]  # fmt: skip
    assert main(argv) == 1  # the other cells ran, and the tables are written
    assert "1 of 2 runs failed" in capsys.readouterr().err
    by_rule = {r["aggregator.name"]: r for r in rows(out / "results.csv")}
    assert by_rule["median"]["status"] == "ok"
    assert by_rule["krum"]["status"] == "failed"
    assert (
        "aggregator.f" in by_rule["krum"]["error"]
        and "needs at least 7" in by_rule["krum"]["error"]
    )
    assert "failed" in (out / "results.md").read_text()


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("grid", "message"),
    [
        ("aggregator.name=mean,krumm", "unknown aggregator 'krumm'"),
        ("aggregator.nmae=mean", "aggregator.nmae: unknown key"),
        ("aggregator.name", "expected section.key=v1,v2"),
        ("byzantine.placement=random,nowhere", "unknown placement 'nowhere'"),
        ("data.partition_params.alpah=1", "alpah: unknown parameter"),
    ],
)
def test_bad_grid_is_one_line_and_exit_2_before_anything_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], grid: str, message: str
) -> None:
    out = tmp_path / "never"
    code = main(
        ["sweep", DEFAULT, "--set", "data.partition=dirichlet", "--grid", grid, "--out", str(out)]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


@pytest.mark.timeout(180)
def test_placement_and_alpha_sweep_through_the_grid(tmp_path: Path) -> None:
    tiny = [
        *TINY[1::2],
        "topology.kind=erdos_renyi",
        "topology.params={p = 0.5}",
        "aggregator.f=auto",
    ]
    tiny += ["data.partition=dirichlet", "byzantine.count=3"]
    tiny += ["aggregator.name=centered_clip"]  # any number of inputs: every placement fits
    grid = parse_grid(
        [
            "byzantine.placement=random,highest_degree,around_victim,cut_vertex",
            "data.partition_params.alpha=0.5,5.0",
        ]
    )
    planned = plan_sweep(DEFAULT, grid, tiny)
    done = run_sweep(planned, tmp_path, jobs=1)
    assert done.failed == 0 and len(done.records) == 8
    graph = build_topology(load_scenario(DEFAULT, tiny)).graph
    placed = {r["values"]["byzantine.placement"]: set(r["byzantine_nodes"]) for r in done.records}
    assert all(len(s) == 3 for s in placed.values())
    top = sorted(d for _, d in graph.degree())[-3]
    assert all(graph.degree(i) >= top for i in placed["highest_degree"])
    assert any(
        placed["around_victim"] <= set(graph.neighbors(v))
        for v in graph
        if v not in placed["around_victim"]
    )
    # f = "auto": each node's f is its own number of Byzantine neighbours.
    rec = next(r for r in done.records if r["values"]["byzantine.placement"] == "around_victim")
    exp = build_experiment(scenario_from_dict(rec["scenario"]))
    assert exp.byzantine == placed["around_victim"]
    expected = [sum(1 for j in graph.neighbors(i) if j in exp.byzantine) for i in range(8)]
    assert exp.f_per_node.tolist() == expected and max(expected) == 3


@pytest.mark.timeout(120)
def test_backdoor_runs_report_attack_success_rate(tmp_path: Path) -> None:
    planned = plan_sweep(DEFAULT, parse_grid(["byzantine.attack=backdoor,label_flip"]), TINY[1::2])
    done = run_sweep(planned, tmp_path, jobs=1)
    by_attack = {r["values"]["byzantine.attack"]: r for r in done.records}
    asr = by_attack["backdoor"]["attack_success_rate"]
    assert isinstance(asr, float) and 0.0 <= asr <= 1.0
    assert by_attack["label_flip"]["attack_success_rate"] is None


@pytest.mark.timeout(60)
def test_bad_jobs_is_exit_2_before_anything_is_written(tmp_path: Path) -> None:
    out = tmp_path / "never"
    assert main(["sweep", DEFAULT, "--jobs", "0", "--out", str(out)]) == 2
    assert not out.exists()


@pytest.mark.timeout(180)
def test_zip_pairs_attack_and_parameters_instead_of_crossing_them(tmp_path: Path) -> None:
    """--zip gives ALIE z = 10 and IPM eps = 0.5 (2 cells per rule), not the 4 pairs."""
    out = tmp_path / "z"
    argv = [
        "sweep", DEFAULT, *TINY,
        "--grid", "aggregator.name=mean,median",
        "--zip", "byzantine.attack=alie,ipm",
        "--zip", "byzantine.params={z=10.0},{eps=0.5}",
        "--jobs", "1", "--out", str(out), "--quiet",
    ]  # fmt: skip
    assert main(argv) == 0
    table = rows(out / "results.csv")
    pairs = {(r["aggregator.name"], r["byzantine.attack"], r["byzantine.params"]) for r in table}
    assert pairs == {
        (rule, attack, params)
        for rule in ("mean", "median")
        for attack, params in (("alie", "{z=10.0}"), ("ipm", "{eps=0.5}"))
    }
    cells = [json.loads(p.read_text()) for p in (out / "cells").glob("*.json")]
    used = {
        c["scenario"]["byzantine"]["attack"]: c["scenario"]["byzantine"]["params"] for c in cells
    }
    assert used == {"alie": {"z": 10.0}, "ipm": {"eps": 0.5}}
    assert json.loads((out / "sweep.json").read_text())["zip"][0] == "byzantine.attack=alie,ipm"
    assert (out / "heatmap.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("zips", "message"),
    [
        (["byzantine.attack=alie,ipm", "byzantine.params={z=1.0}"], "need as many values"),
        (["byzantine.attack=alie,ipm", "byzantine.attack=ipm,alie"], "swept twice"),
    ],
)
def test_bad_zip_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], zips: list[str], message: str
) -> None:
    argv = ["sweep", DEFAULT, "--out", str(tmp_path / "never")]
    for z in zips:
        argv += ["--zip", z]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
