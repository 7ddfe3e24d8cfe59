"""One run over two "hosts" (127.0.0.1 and 127.0.0.2), one ``p2pfl launch --host`` each,
merged by ``p2pfl report``: the merged result is the simulator's."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import networkx as nx
import pytest

from p2pfl.config import load_scenario
from p2pfl.experiment import build_experiment
from p2pfl.sim import Simulation
from p2pfl.topology import Topology, save_topology
from p2pfl.transport import free_tcp_ports

pytestmark = pytest.mark.timeout(240)

HOSTS = {0: "127.0.0.1", 1: "127.0.0.1", 2: "127.0.0.2", 3: "127.0.0.2"}


def second_loopback_works() -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.2", 0))
        except OSError:
            return False
    return True


def p2pfl(*args: str, timeout: float = 150) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "p2pfl", *args], capture_output=True, text=True, timeout=timeout
    )


@pytest.mark.skipif(not second_loopback_works(), reason="127.0.0.2 is not usable here")
def test_two_hosts_launched_separately_and_merged_match_the_simulator(run_dir: Path) -> None:
    ports = {h: iter(free_tcp_ports(2, h)) for h in set(HOSTS.values())}
    topology = Topology(
        graph=nx.cycle_graph(4),
        addresses={i: f"{h}:{next(ports[h])}" for i, h in HOSTS.items()},
        name="ring-4-two-hosts",
    )
    save_topology(topology, run_dir / "ring.toml")
    scenario_file = run_dir / "two-hosts.toml"
    scenario_file.write_text(
        '[run]\nname = "two-hosts"\nrounds = 4\neval_every = 2\n'
        '[topology]\nfile = "ring.toml"\n'
        "[byzantine]\ncount = 0\n"
        '[aggregator]\nname = "mean"\nf = 0\n'
        "[network]\ninsecure = true\n"
    )
    outs = {h: run_dir / f"out-{h}" for h in ("127.0.0.1", "127.0.0.2")}
    launches = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "p2pfl",
                "launch",
                str(scenario_file),
                "--host",
                h,
                "--out",
                str(out),
                "--quiet",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for h, out in outs.items()
    ]
    try:
        finished = [p.communicate(timeout=150) for p in launches]
    finally:
        for p in launches:
            if p.poll() is None:
                p.terminate()  # launch stops its nodes on SIGTERM
                p.wait(timeout=30)

    assert [p.returncode for p in launches] == [0, 0], finished
    report = p2pfl("report", *map(str, outs.values()), "--out", str(run_dir / "merged"), "--quiet")
    assert report.returncode == 0, report.stderr
    sim = Simulation(build_experiment(load_scenario(scenario_file))).run()
    merged = run_dir / "merged"
    summary = json.loads((merged / "summary.json").read_text())
    assert summary["mode"] == "report"
    assert summary["nodes_reported"] == [0, 1, 2, 3]
    assert summary["honest_accuracy_mean"] == pytest.approx(
        float(sim.final.honest_accuracy.mean()), abs=1e-6
    )
    assert summary["consensus_distance"] == pytest.approx(sim.final.consensus_distance, rel=1e-3)
    run_ids = set()
    for h, out in outs.items():
        here = json.loads((out / "summary.json").read_text())
        assert here["nodes_here"] == [i for i, host in HOSTS.items() if host == h]
        run_ids.add(here["run_id"])
    assert run_ids == {summary["run_id"]}  # two separate launches, one run id
    assert summary["missing_nodes"] == []
    for name in ("metrics.jsonl", "accuracy.png", "topology.png"):
        assert (merged / name).is_file(), name
    one = p2pfl("report", str(outs["127.0.0.1"]), "--out", str(run_dir / "one"), "--quiet")
    assert one.returncode == 0, one.stderr
    assert "2 of the topology's 4 nodes are in none of these directories (node 2, 3)" in one.stderr


def test_report_of_a_directory_that_is_not_a_run_is_a_clear_error(tmp_path: Path) -> None:
    result = p2pfl("report", str(tmp_path), "--out", str(tmp_path / "r"), timeout=60)
    assert result.returncode == 2
    assert "no summary.json; not an output directory of p2pfl launch" in result.stderr
    missing = p2pfl("report", str(tmp_path / "nope"), "--out", str(tmp_path / "r"), timeout=60)
    assert missing.returncode == 2
    assert "nope: no such directory" in missing.stderr
