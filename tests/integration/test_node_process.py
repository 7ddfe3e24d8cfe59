"""``p2pfl node`` processes over real sockets: SIGTERM stops one cleanly, its neighbour goes on.

Two nodes on a line, 127.0.0.1, free ports, insecure; events read from stdout
(``--events``): waits are on those lines, never on sleeps.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path

import networkx as nx
import numpy as np
import pytest

from p2pfl._compat import timeout as async_timeout
from p2pfl.node import read_node_log
from p2pfl.topology import Topology, save_topology
from p2pfl.transport import free_tcp_ports

pytestmark = pytest.mark.timeout(120)

ROUND_TIMEOUT = 20.0  # long: the survivor must stop waiting because of the bye, not the deadline


async def start_node(scenario: Path, node: int, out: Path) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "p2pfl",
        "node",
        str(scenario),
        "--id",
        str(node),
        "--out",
        str(out),
        "--insecure",
        "--events",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        start_new_session=True,
    )


async def until_round(proc: asyncio.subprocess.Process, round_: int) -> None:
    assert proc.stdout is not None
    async for line in proc.stdout:
        event = json.loads(line)
        if event["event"] == "round" and event["round"] >= round_:
            return
    raise AssertionError(f"the node exited before round {round_}")


async def test_sigterm_stops_a_node_cleanly_and_its_neighbour_finishes(run_dir: Path) -> None:
    ports = free_tcp_ports(2)
    save_topology(
        Topology(
            graph=nx.path_graph(2), addresses={i: f"127.0.0.1:{p}" for i, p in enumerate(ports)}
        ),
        run_dir / "line.toml",
    )
    scenario = run_dir / "line.toml.scenario.toml"
    scenario.write_text(
        '[run]\nrounds = 100\neval_every = 50\n[topology]\nfile = "line.toml"\n'
        '[byzantine]\ncount = 0\n[aggregator]\nname = "mean"\nf = 0\n'
        f"[network]\nround_timeout = {ROUND_TIMEOUT}\n"
    )
    procs = [await start_node(scenario, k, run_dir) for k in (0, 1)]
    try:
        async with async_timeout(90):
            await until_round(procs[0], 3)
            procs[0].send_signal(signal.SIGTERM)
            await procs[0].communicate()  # reads its stdout to the end, then waits
            await procs[1].communicate()
    finally:
        for p in procs:
            if p.returncode is None:
                p.kill()
                await p.wait()

    assert procs[0].returncode == 128 + signal.SIGTERM
    assert procs[1].returncode == 0
    log0 = read_node_log(run_dir / "node-0.jsonl")
    assert log0[-1]["event"] == "end" and log0[-1]["status"] == "stopped"
    assert not (run_dir / "node-0.npy").exists()  # stopped early: no final parameters
    log1 = read_node_log(run_dir / "node-1.jsonl")
    rounds1 = [e for e in log1 if e["event"] == "round"]
    assert len(rounds1) == 100
    assert max(e["wait_seconds"] for e in rounds1) < ROUND_TIMEOUT / 2  # the bye ended the wait
    assert np.load(run_dir / "node-1.npy", allow_pickle=False).dtype == np.float32
