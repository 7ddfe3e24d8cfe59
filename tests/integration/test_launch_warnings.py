"""``p2pfl launch`` prints its nodes' warnings live on stderr (also with stdout not a
terminal), and counts them per node in the final table and ``summary.json``.

Three nodes on a ring; node 2's address is on another "host" (``localhost``) that
nobody launches, so nodes 0 and 1 run without it: each warns about it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import networkx as nx
import pytest

from p2pfl.node import read_node_log
from p2pfl.topology import Topology, save_topology
from p2pfl.transport import free_tcp_ports

pytestmark = pytest.mark.timeout(240)

ROUNDS = 150  # the run goes on well after the first warning
HERE = ["--host", "127.0.0.1"]


def test_warnings_print_as_they_happen_and_are_counted(run_dir: Path) -> None:
    ports = free_tcp_ports(3)
    addresses = {0: f"127.0.0.1:{ports[0]}", 1: f"127.0.0.1:{ports[1]}", 2: f"localhost:{ports[2]}"}
    save_topology(Topology(graph=nx.cycle_graph(3), addresses=addresses), run_dir / "t.toml")
    scenario = run_dir / "s.toml"
    scenario.write_text(
        f'[run]\nrounds = {ROUNDS}\neval_every = {ROUNDS}\n[topology]\nfile = "t.toml"\n'
        '[byzantine]\ncount = 0\n[aggregator]\nname = "mean"\nf = 0\n'
        "[network]\ninsecure = true\nhello_timeout = 3\nround_timeout = 3\n"
    )
    out = run_dir / "out"
    launch = subprocess.Popen(
        [sys.executable, "-m", "p2pfl", "launch", str(scenario), *HERE, "--out", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert launch.stderr is not None
        first = ""
        for line in launch.stderr:  # blocks on the pipe: no sleeps
            if line.startswith("p2pfl launch: warning: "):
                first = line
                break
        running_at_first_warning = launch.poll() is None
        stdout, rest = launch.communicate(timeout=200)
    finally:
        if launch.poll() is None:
            launch.kill()
            launch.wait()

    assert launch.returncode == 0, rest
    assert first, "no warning line on stderr"
    assert running_at_first_warning  # printed while the nodes ran, not at the end
    printed = [first.rstrip("\n")] + [
        line for line in rest.splitlines() if line.startswith("p2pfl launch: warning: ")
    ]
    logged = {
        k: [e for e in read_node_log(out / "nodes" / f"node-{k}.jsonl") if e["event"] == "warning"]
        for k in (0, 1)
    }
    messages = {
        f"p2pfl launch: warning: {e['message']}" for events in logged.values() for e in events
    }
    assert set(printed) <= messages and len(printed) >= 2
    health = json.loads((out / "summary.json").read_text())["node_health"]
    for k in (0, 1):
        assert logged[k], f"node {k} logged no warning about its missing neighbour"
        assert sum(health[str(k)]["warnings"].values()) == len(logged[k])
    assert "node health: 2 of 2 nodes had warnings" in stdout
