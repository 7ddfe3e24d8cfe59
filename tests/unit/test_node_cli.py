"""``p2pfl node`` / ``launch`` / ``report``: every refusal is one clear line and exit code 2;
a failed node process is named, with exit code 1."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import networkx as nx
import pytest

import p2pfl.launcher
from p2pfl.cli.main import main
from p2pfl.launcher import LaunchResult, NodeExit, NodeOutputs
from p2pfl.topology import Topology, save_topology

pytestmark = pytest.mark.timeout(60)

SMALL = [
    "--set",
    "topology.n=4",
    "--set",
    "topology.params.degree=3",
    "--set",
    "byzantine.count=0",
    "--set",
    "run.rounds=2",
]


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    return code, capsys.readouterr().err


def write_topology(path: Path, addresses: dict[int, str]) -> Path:
    save_topology(Topology(graph=nx.cycle_graph(4), addresses=addresses), path)
    return path


def scenario_with(path: Path, topology: Path, extra: str = "") -> Path:
    path.write_text(
        f'[topology]\nfile = "{topology.name}"\n[byzantine]\ncount = 0\n'
        f'[aggregator]\nname = "mean"\nf = 0\n{extra}'
    )
    return path


def test_node_needs_a_topology_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, err = run_cli(capsys, "node", "--id", "0", "--out", str(tmp_path), *SMALL)
    assert code == 2
    assert "topology.file: a node process needs a topology file with node addresses" in err


def test_node_with_an_id_outside_the_topology(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    topo = write_topology(tmp_path / "t.toml", {i: f"127.0.0.1:{6000 + i}" for i in range(4)})
    scenario = scenario_with(tmp_path / "s.toml", topo)
    code, err = run_cli(capsys, "node", str(scenario), "--id", "9", "--out", str(tmp_path / "o"))
    assert code == 2
    assert "--id 9: the topology has nodes 0..3" in err


def test_node_without_keys_must_be_told_insecure(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    topo = write_topology(tmp_path / "t.toml", {i: f"127.0.0.1:{6000 + i}" for i in range(4)})
    scenario = scenario_with(tmp_path / "s.toml", topo)
    code, err = run_cli(capsys, "node", str(scenario), "--id", "0", "--out", str(tmp_path / "o"))
    assert code == 2
    assert "records no public keys" in err and "--insecure" in err


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (("--host", "elsewhere"), "--host elsewhere: the scenario generates its topology"),
        (("--keys", "k"), "--keys: the scenario generates its topology"),
        (("--keys", "k", "--insecure"), "--insecure and --keys exclude each other"),
        (("--set", "byzantine.count=1", "--set", "byzantine.knowledge=omniscient"), "omniscient"),
    ],
)
def test_launch_refusals(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, flags: tuple[str, ...], message: str
) -> None:
    sets = [*SMALL, "--set", "aggregator.name=mean", "--set", "aggregator.f=0"]
    code, err = run_cli(capsys, "launch", *sets, *flags, "--out", str(tmp_path), "--quiet")
    assert code == 2
    assert message in err


def test_launch_of_remote_addresses_needs_host(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    addresses = {0: "a:6000", 1: "a:6001", 2: "b:6000", 3: "b:6001"}
    scenario = scenario_with(
        tmp_path / "s.toml",
        write_topology(tmp_path / "t.toml", addresses),
        "[network]\ninsecure = true\n",
    )
    code, err = run_cli(capsys, "launch", str(scenario), "--out", str(tmp_path / "o"), "--quiet")
    assert code == 2
    assert "on host(s) a, b: pass --host NAME" in err


def test_launch_names_the_node_that_failed(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def fake_launch(plan: Any, **kwargs: Any) -> LaunchResult:
        exits = [
            NodeExit(0, 0),
            NodeExit(1, -9, ("Traceback", "boom")),
            NodeExit(2, 0),
            NodeExit(3, 0),
        ]
        return LaunchResult(exits, NodeOutputs(), None, 1.0)

    monkeypatch.setattr(p2pfl.launcher, "launch", fake_launch)
    sets = [*SMALL, "--set", "aggregator.name=mean", "--set", "aggregator.f=0"]

    code, err = run_cli(capsys, "launch", *sets, "--out", str(tmp_path), "--quiet")

    assert code == 1
    assert "node 1 killed by SIGKILL: Traceback | boom" in err
    assert "node failure: 1 of 4 node processes failed (node 1)" in err
    assert (tmp_path / "topology.toml").is_file()  # the generated topology every node reads
    assert sorted(p.name for p in (tmp_path / "keys").glob("node-*"))[:2] == [
        "node-0.key",
        "node-0.key_secret",
    ]
