"""``p2pfl report`` checks what it merges: missing or repeated directories, directories
of different runs and overlapping nodes are refused (one line, exit code 2); nodes that
no directory holds are named in a warning and in ``summary.json``. Run ids: the same
for two hosts of one deployment, different for another topology, ``--run-id`` wins."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import networkx as nx
import numpy as np
import pytest

from p2pfl.cli.main import main
from p2pfl.config import load_scenario
from p2pfl.errors import ConfigError
from p2pfl.launcher import plan_launch
from p2pfl.launcher.outputs import write_run
from p2pfl.report import summarize_records
from p2pfl.security import generate_keys
from p2pfl.topology import Topology, save_topology

pytestmark = pytest.mark.timeout(120)

SCENARIO = load_scenario(None, ["topology.n=4", "byzantine.count=0"]).to_dict()


def counters(trained: int, kept_own: int = 0, **warnings: int) -> dict[str, Any]:
    return {
        "rounds_completed": 2,
        "rounds_trained": trained,
        "rounds_kept_own": kept_own,
        "warnings": warnings,
    }


def host_dir(
    root: Path,
    nodes: list[int],
    *,
    run_id: str = "run-a",
    scenario: dict[str, Any] = SCENARIO,
    node_counters: dict[str, Any] | None = None,
) -> Path:
    """A launch directory as ``p2pfl launch --host`` writes it, for ``nodes`` of 4."""
    root.mkdir(parents=True)
    records = [
        {"round": r, "node": k, "byzantine": False, "accuracy": 0.5, "distance_to_mean": None}
        for r in (1, 2)
        for k in nodes
    ]
    extra = {
        "run_id": run_id,
        "mode": "launch",
        "nodes": 4,
        "nodes_here": nodes,
        "byzantine_nodes": [],
        "node_counters": node_counters or {str(k): counters(2) for k in nodes},
    }
    write_run(root, records, scenario, 1.0, extra, topology=None, title="t", plots=False)
    (root / "nodes").mkdir()
    for k in nodes:
        vector = np.full(3, k, dtype=np.float32)
        np.save(root / "nodes" / f"node-{k}.npy", vector, allow_pickle=False)
    return root


def report(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["report", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_two_hosts_of_one_run_merge_with_health_and_run_id(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    a = host_dir(tmp_path / "a", [0, 1], node_counters={"0": counters(2), "1": counters(1, 1)})
    b = host_dir(tmp_path / "b", [2, 3], node_counters={"2": counters(2, dead=1), "3": counters(2)})
    out = tmp_path / "merged"

    code, stdout, err = report(capsys, str(a), str(b), "--out", str(out))

    assert code == 0, err
    assert "warning" not in err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["run_id"] == "run-a"
    assert summary["missing_nodes"] == []
    assert summary["node_health"]["1"]["rounds_kept_own"] == 1
    assert summary["node_health"]["2"]["warnings"] == {"dead": 1}
    assert summary["node_health"]["0"] == {
        "rounds_trained": 2,
        "rounds_skipped": 0,  # not in these counters (an older node): read as 0
        "rounds_kept_own": 0,
        "rounds_waited_out": 0,
        "warnings": {},
    }
    assert "node health: 2 of 4 nodes had warnings" in stdout


def test_nodes_missing_from_the_merge_are_named(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    a = host_dir(tmp_path / "a", [0, 1])
    out = tmp_path / "merged"

    code, stdout, err = report(capsys, str(a), "--out", str(out))

    assert code == 0, err
    assert (
        "warning: 2 of the topology's 4 nodes are in none of these directories (node 2, 3)" in err
    )
    assert json.loads((out / "summary.json").read_text())["missing_nodes"] == [2, 3]
    assert "missing nodes" in stdout


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda a, t: [str(t / "nope")], "nope: no such directory"),
        (lambda a, t: [str(a), str(a)], "a: given twice; name each host's directory once"),
        (lambda a, t: [str(a), str(a / ".." / "a")], "given twice (also as"),
        (lambda a, t: [str(a / "summary.json")], "summary.json: not a directory"),
        (lambda a, t: [str(t)], "no summary.json; not an output directory of p2pfl launch"),
        (lambda a, t: [str(a), str(host_dir(t / "b", [1, 2]))], "node 1 has outputs in both"),
        (
            lambda a, t: [str(a), str(host_dir(t / "b", [2, 3], run_id="run-b"))],
            "is run run-b but",
        ),
        (
            lambda a, t: [str(a), str(host_dir(t / "b", [2], scenario={**SCENARIO, "x": 1}))],
            "ran a different scenario",
        ),
    ],
)
def test_report_refuses_what_is_not_one_run(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, make: Any, message: str
) -> None:
    a = host_dir(tmp_path / "a", [0, 1])
    code, _, err = report(capsys, *make(a, tmp_path), "--out", str(tmp_path / "merged"))
    assert code == 2
    assert message in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "merged" / "summary.json").exists()


def test_report_will_not_write_over_an_input(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    a = host_dir(tmp_path / "a", [0, 1, 2, 3])
    before = (a / "summary.json").read_text()
    code, _, err = report(capsys, str(a), "--out", str(a))
    assert code == 2 and "is one of the directories to merge" in err
    assert (a / "summary.json").read_text() == before


def test_sim_summaries_carry_a_run_id_of_their_scenario() -> None:
    records = [{"round": 1, "node": 0, "byzantine": False, "accuracy": 0.5}]
    first = summarize_records(records, SCENARIO, 1.0)["run_id"]
    again = summarize_records(records, SCENARIO, 2.0)["run_id"]
    other = summarize_records(records, {**SCENARIO, "x": 1}, 1.0)["run_id"]
    assert first == again != other
    assert len(first) == 16 and int(first, 16) >= 0


def _deployment(tmp_path: Path, name: str, keys: bool) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    addresses = {0: "127.0.0.1:47000", 1: "127.0.0.1:47001", 2: "a:47002", 3: "a:47003"}
    public_keys = generate_keys(folder / "keys", range(4)) if keys else {}
    save_topology(
        Topology(graph=nx.cycle_graph(4), addresses=addresses, public_keys=public_keys),
        folder / "t.toml",
    )
    (folder / "s.toml").write_text(
        '[topology]\nfile = "t.toml"\n[byzantine]\ncount = 0\n[aggregator]\nname = "mean"\nf = 0\n'
    )
    return folder


def test_hosts_of_one_deployment_agree_on_the_run_id_without_talking(tmp_path: Path) -> None:
    dep = _deployment(tmp_path, "dep", keys=True)
    copy = tmp_path / "copy"  # the same files on another machine, with a comment added
    copy.mkdir()
    (copy / "s.toml").write_text((dep / "s.toml").read_text())
    (copy / "t.toml").write_text("# host b's copy\n" + (dep / "t.toml").read_text())
    rekeyed = _deployment(tmp_path, "rekeyed", keys=True)

    def run_id(folder: Path, host: str, **kw: Any) -> str:
        keys = folder / "keys" if (folder / "keys").is_dir() else dep / "keys"
        plan = plan_launch(
            str(folder / "s.toml"), [], tmp_path / "out", host=host, key_dir=str(keys), **kw
        )
        return plan.run_id

    here = run_id(dep, "127.0.0.1")
    assert run_id(copy, "a") == here
    assert run_id(rekeyed, "a") != here  # other keys: another deployment
    assert run_id(dep, "a", run_id="again-2") == "again-2"
    with pytest.raises(ConfigError, match="--run-id 'a b'"):
        run_id(dep, "a", run_id="a b")
