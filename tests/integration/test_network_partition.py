"""A network partition with Linux network namespaces: both sides learn apart, then reconverge.

The test builds its own tiny network, private to this machine: two namespaces
(``A`` and ``B``) joined by one veth pair, each end with an address of a random
``10.213.x.0/24`` that exists only inside them. Nodes 0-2 run in ``A``
(``10.213.x.1``), nodes 3-5 in ``B`` (``10.213.x.2``), as ``p2pfl node``
processes started with ``ip netns exec``; the graph is two triangles joined by
the edges 2-3 and 0-5. Setting the veth end in ``A`` down cuts the graph in two;
setting it up heals it. Namespaces, links and processes are removed in a
``finally``, whatever happens. Needs root (``ip netns add``): skipped otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import networkx as nx
import numpy as np
import pytest

from p2pfl._compat import timeout as async_timeout
from p2pfl.checkpoint import CheckpointError, load_checkpoint
from p2pfl.node import read_node_log
from p2pfl.topology import Topology, save_topology

pytestmark = [pytest.mark.netns, pytest.mark.timeout(240)]

SIDE_A = (0, 1, 2)
SIDE_B = (3, 4, 5)
CROSS = ((2, 3), (0, 5))
ROUNDS = 300
CUT_AT = 5  # node 0's round at which the link goes down (after its eval of round 5)
CUT_FOR = 30  # rounds every node completes while cut off before the link is healed
WATCHER = 0


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check, timeout=20)


def netns_refusal() -> str | None:
    """Why network namespaces cannot be made here (None: they can)."""
    probe = f"p2pfl-probe-{secrets.token_hex(3)}"
    try:
        result = ip("netns", "add", probe, check=False)
    except FileNotFoundError:
        return "the `ip` command (iproute2) is not installed"
    if result.returncode != 0:
        return f"`ip netns add` is not permitted here: {result.stderr.strip()}"
    ip("netns", "delete", probe, check=False)
    return None


class Partitionable:
    """Namespaces ``A`` and ``B`` joined by a veth pair; :meth:`cut` / :meth:`heal` the link."""

    def __init__(self) -> None:
        token = secrets.token_hex(3)
        self.ns = {"A": f"p2pfl-{token}-a", "B": f"p2pfl-{token}-b"}
        self.veth = {"A": f"pv{token}a", "B": f"pv{token}b"}
        subnet = f"10.213.{secrets.randbelow(256)}"
        self.host = {"A": f"{subnet}.1", "B": f"{subnet}.2"}

    def create(self) -> None:
        for ns in self.ns.values():
            ip("netns", "add", ns)
            ip("-n", ns, "link", "set", "lo", "up")
        ip("link", "add", self.veth["A"], "netns", self.ns["A"], "type", "veth", "peer", "name",
           self.veth["B"], "netns", self.ns["B"])  # fmt: skip
        for side, ns in self.ns.items():
            ip("-n", ns, "addr", "add", f"{self.host[side]}/24", "dev", self.veth[side])
            ip("-n", ns, "link", "set", self.veth[side], "up")

    def cut(self) -> None:
        ip("-n", self.ns["A"], "link", "set", self.veth["A"], "down")

    def heal(self) -> None:
        ip("-n", self.ns["A"], "link", "set", self.veth["A"], "up")

    def remove(self) -> None:
        for ns in self.ns.values():  # deleting a namespace deletes its veth end, and the pair
            ip("netns", "delete", ns, check=False)

    def side_of(self, node: int) -> str:
        return "A" if node in SIDE_A else "B"


@pytest.fixture
def net() -> Iterator[Partitionable]:
    reason = netns_refusal()
    if reason is not None:
        pytest.skip(f"partition test needs network namespaces: {reason}")
    net = Partitionable()
    try:
        net.create()
        yield net
    finally:
        net.remove()
    left = ip("netns", "list").stdout
    assert net.ns["A"] not in left and net.ns["B"] not in left


def side_mean(params: dict[int, np.ndarray], side: tuple[int, ...]) -> np.ndarray:
    return np.mean([params[k] for k in side], axis=0)


def cross_distance(params: dict[int, np.ndarray]) -> float:
    """Distance between the two sides' average models."""
    return float(np.linalg.norm(side_mean(params, SIDE_A) - side_mean(params, SIDE_B)))


def latest_params(ckpt_dir: Path, node: int) -> np.ndarray:
    for _ in range(20):  # the node may be replacing its checkpoints right now
        with contextlib.suppress(CheckpointError, FileNotFoundError):
            ckpt = load_checkpoint(ckpt_dir, node)
            if ckpt is not None:
                return ckpt.params.numpy()
    raise AssertionError(f"no readable checkpoint of node {node}")


async def test_both_sides_learn_apart_and_reconverge_after_healing(
    net: Partitionable, tmp_path: Path
) -> None:
    graph = nx.Graph()
    graph.add_edges_from([(0, 1), (1, 2), (0, 2), (3, 4), (4, 5), (3, 5), *CROSS])
    addresses = {k: f"{net.host[net.side_of(k)]}:{7100 + k}" for k in sorted(graph)}
    save_topology(Topology(graph=graph, addresses=addresses), tmp_path / "net.toml")
    scenario = tmp_path / "partition.toml"
    scenario.write_text(
        f'[run]\nname = "partition"\nrounds = {ROUNDS}\neval_every = 5\n'
        '[topology]\nfile = "net.toml"\n[byzantine]\ncount = 0\n'
        '[aggregator]\nname = "mean"\nf = 0\n[model]\nparams = { hidden = [16] }\n'
        "[network]\nround_timeout = 1.0\nhello_timeout = 30.0\ncheckpoint_every = 1\n"
    )
    out = tmp_path / "out"
    procs: dict[int, asyncio.subprocess.Process] = {}
    events: dict[int, list[dict[str, Any]]] = {k: [] for k in graph}
    marks: dict[str, float] = {}
    at_heal: dict[int, np.ndarray] = {}
    reached = {name: asyncio.Event() for name in ("cut", "heal")}
    # Healed once every node completed CUT_FOR rounds cut off: the side that waits longer
    # for its lost neighbours (a patience, then their liveness timeout) must get its rounds
    # too, however fast the other side runs.
    latest = {k: 0 for k in graph}
    at_cut: dict[int, int] = {}

    async def read(k: int, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        async for line in proc.stdout:
            with contextlib.suppress(ValueError):
                event = json.loads(line)
                events[k].append(event)
                if event.get("event") != "round":
                    continue
                latest[k] = event["round"]
                if k == WATCHER and event["round"] >= CUT_AT:
                    reached["cut"].set()
                if at_cut and all(latest[j] >= at_cut[j] + CUT_FOR for j in graph):
                    reached["heal"].set()

    readers = []
    try:
        for k in sorted(graph):
            procs[k] = await asyncio.create_subprocess_exec(
                "ip", "netns", "exec", net.ns[net.side_of(k)],
                sys.executable, "-m", "p2pfl", "node", str(scenario), "--id", str(k),
                "--out", str(out), "--insecure", "--events",
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.DEVNULL,
                start_new_session=True,
            )  # fmt: skip
            readers.append(asyncio.create_task(read(k, procs[k])))
        async with async_timeout(150):
            await reached["cut"].wait()
            net.cut()
            marks["cut"] = asyncio.get_running_loop().time()
            at_cut.update(latest)
            await reached["heal"].wait()
            at_heal = {k: latest_params(out / "checkpoints", k) for k in sorted(graph)}
            heal_time = time.time()  # the clock of the nodes' log times
            net.heal()
            codes = {k: await p.wait() for k, p in procs.items()}
    finally:
        for proc in procs.values():
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                await proc.wait()
        for task in readers:
            task.cancel()
        await asyncio.gather(*readers, return_exceptions=True)

    assert codes == {k: 0 for k in graph}
    logs = {k: read_node_log(out / f"node-{k}.jsonl") for k in graph}
    cut_time = min(
        e["time"] for e in logs[WATCHER] if e["event"] == "round" and e["round"] == CUT_AT
    )

    def during_cut(k: int, kind: str) -> list[dict[str, Any]]:
        return [e for e in logs[k] if e["event"] == kind and cut_time < e["time"] <= heal_time]

    # both sides keep learning while cut off: rounds complete, accuracy rises
    accuracy: dict[str, tuple[float, float]] = {}
    for side, members in (("A", SIDE_A), ("B", SIDE_B)):
        for k in members:
            # (a round in flight at the cut may have been logged just after it)
            assert len(during_cut(k, "round")) >= CUT_FOR - 1, (k, len(during_cut(k, "round")))
        before = np.mean(
            [next(e["accuracy"] for e in logs[k] if e["event"] == "eval") for k in members]
        )
        late = np.mean([during_cut(k, "eval")[-1]["accuracy"] for k in members])
        accuracy[side] = (float(before), float(late))
        assert late > before + 0.05, (side, before, late)
    # nobody across the cut was heard during it
    for a, b in CROSS:
        assert all(b not in e["received"] for e in during_cut(a, "round")[5:])
    # every node finishes; after healing the sides reconverge
    for k in graph:
        assert [e["status"] for e in logs[k] if e["event"] == "end"] == ["done"]
        assert max(e["round"] for e in logs[k] if e["event"] == "round") == ROUNDS
    final = {k: np.load(out / f"node-{k}.npy", allow_pickle=False) for k in graph}
    healed, end = cross_distance(at_heal), cross_distance(final)
    catch_ups = {k: len([e for e in logs[k] if e["event"] == "catch_up"]) for k in graph}
    print(
        f"accuracy (first eval -> last eval while cut): {accuracy}; cross-cut distance "
        f"{healed:.4f} at healing -> {end:.4f} at the end; catch-up rounds {catch_ups}"
    )
    assert end < 0.5 * healed, (healed, end)
    # the link carries vectors again after healing (the very last round may miss one: the
    # two sides do not end in lockstep after their catch-up)
    for a, b in CROSS:
        tail = [e for e in logs[a] if e["event"] == "round"][-10:]
        assert any(b in e["received"] for e in tail), (a, b)
