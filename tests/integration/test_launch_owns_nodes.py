"""The launcher owns its nodes: no node process outlives a ``p2pfl launch`` stopped
by SIGTERM or SIGHUP or killed by SIGKILL, and a node that cannot bind its address stops
the whole launch at once with exit code 2, naming the node and the address."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import networkx as nx
import pytest
from _procs import processes_mentioning, wait_exit

from p2pfl.node import read_node_log
from p2pfl.topology import Topology, save_topology
from p2pfl.transport import free_tcp_ports

pytestmark = pytest.mark.timeout(240)

TINY = [
    "--insecure",
    "--set",
    "topology.n=3",
    "--set",
    "topology.kind=ring",
    "--set",
    "topology.params={}",
    "--set",
    "byzantine.count=0",
    "--set",
    "run.rounds=100000",  # runs until stopped
    "--set",
    "run.eval_every=100000",
]

# ``p2pfl launch``'s own code in a process that reports its nodes' rounds on stdout,
# so the test knows when every node is mid-run before it kills this launcher.
LAUNCHER = """
import asyncio, sys
from pathlib import Path
from p2pfl.launcher import launch, plan_launch
plan = plan_launch(None, sys.argv[2:], Path(sys.argv[1]), insecure=True)
def on_event(fleet, node, event):
    if event.get("event") == "round":
        print(node, event["round"], flush=True)
asyncio.run(launch(plan, on_event=on_event))
"""


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_sigterm_or_sighup_to_launch_stops_every_node_process(
    run_dir: Path, signum: signal.Signals
) -> None:
    out = run_dir / "out"
    launch = subprocess.Popen(
        [sys.executable, "-m", "p2pfl", "launch", "--out", str(out), *TINY],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert launch.stdout is not None
        lines = []
        for line in launch.stdout:  # blocks on the pipe: no sleeps
            lines.append(line)
            if "node processes running" in line:
                break
        assert processes_mentioning(str(out / "nodes")), lines
        launch.send_signal(signum)
        _, err = launch.communicate(timeout=60)
    finally:
        if launch.poll() is None:
            launch.kill()
            launch.wait()

    assert launch.returncode == 128 + signum, err
    assert f"terminated ({signum.name}); every node process was stopped" in err
    assert processes_mentioning(str(out / "nodes")) == []


@pytest.mark.skipif(not hasattr(os, "pidfd_open"), reason="needs pidfd_open (Linux)")
def test_nodes_stop_by_themselves_when_their_launcher_is_killed(run_dir: Path) -> None:
    out = run_dir / "out"
    launcher = subprocess.Popen(
        [sys.executable, "-c", LAUNCHER, str(out), *(a for a in TINY[1:] if a != "--set")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert launcher.stdout is not None
        rounds: dict[int, int] = {}
        for line in launcher.stdout:  # every node mid-run: its SIGTERM handler is in place
            node, round_ = map(int, line.split())
            rounds[node] = round_
            if len(rounds) == 3 and min(rounds.values()) >= 2:
                break
        else:
            raise AssertionError(f"the launcher ended: {launcher.communicate()[1][-2000:]}")
        nodes = processes_mentioning(str(out / "nodes"))
        assert len(nodes) == 3, rounds
        launcher.kill()
        launcher.wait(timeout=30)
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait()

    assert all(wait_exit(pid, 60) for pid in nodes), "a node outlived its launcher by 60 s"
    assert processes_mentioning(str(out / "nodes")) == []
    for k in range(3):
        end = read_node_log(out / "nodes" / f"node-{k}.jsonl")[-1]
        assert end["event"] == "end" and end["status"] == "stopped", end  # a clean stop


def test_an_address_in_use_stops_the_launch_at_once_with_exit_code_2(run_dir: Path) -> None:
    ports = free_tcp_ports(3)
    addresses = {i: f"127.0.0.1:{p}" for i, p in enumerate(ports)}
    save_topology(Topology(graph=nx.cycle_graph(3), addresses=addresses), run_dir / "t.toml")
    scenario = run_dir / "s.toml"
    scenario.write_text(
        '[run]\nrounds = 2\n[topology]\nfile = "t.toml"\n[byzantine]\ncount = 0\n'
        '[aggregator]\nname = "mean"\nf = 0\n'
        # Without the fix the others wait this long for node 1: far past the timeout below.
        "[network]\ninsecure = true\nhello_timeout = 900\nround_timeout = 900\n"
    )
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", ports[1]))
        squatter.listen()
        launch = subprocess.run(
            [sys.executable, "-m", "p2pfl", "launch", str(scenario), "--out", str(run_dir / "o")],
            capture_output=True,
            text=True,
            timeout=180,
        )
        node = subprocess.run(
            [sys.executable, "-m", "p2pfl", "node", str(scenario), "--id", "1"],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=run_dir,
        )

    assert launch.returncode == 2, launch.stderr
    error = launch.stderr.strip().splitlines()[-1]
    assert error.startswith(f"p2pfl launch: error: node 1 at {addresses[1]}: cannot bind"), error
    assert "Address already in use" in error and "every node process was stopped" in error
    assert not (run_dir / "o" / "summary.json").exists()
    assert processes_mentioning(str(run_dir / "o")) == []

    assert node.returncode == 2, node.stderr
    last = node.stderr.strip().splitlines()[-1]
    assert last.startswith(f"p2pfl node: error: node 1 at {addresses[1]}: cannot bind"), last
    assert "Traceback" not in node.stderr


def test_launch_summary_has_the_run_id_it_printed(run_dir: Path) -> None:
    out = run_dir / "out"
    launch = subprocess.run(
        [
            sys.executable,
            "-m",
            "p2pfl",
            "launch",
            "--out",
            str(out),
            *TINY[:-4],
            "--set",
            "run.rounds=2",
            "--run-id",
            "trial-7",
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert launch.returncode == 0, launch.stderr
    assert "run trial-7" in launch.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["run_id"] == "trial-7"
    assert sorted(summary["node_health"]) == ["0", "1", "2"]
    assert all(h["rounds_kept_own"] == 0 for h in summary["node_health"].values())
