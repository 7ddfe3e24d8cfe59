"""Helpers for integration tests that start real node processes.

- :func:`processes_mentioning` / :func:`no_leftover_processes`: find (and kill) any
  process whose command line names a test's private tmp directory, so a test can
  assert it left nothing running; :func:`wait_exit`: wait for any process to end;
- :class:`LiveNet`: a topology file whose nodes are ``p2pfl node`` processes
  (``--events``, ``--insecure`` or ``--keys`` when ``secure``, each in its own process group, killed in ``close``)
  plus one *attacker* node id that no process runs: the test speaks for it with
  raw ZeroMQ sockets (:meth:`LiveNet.attack`), as a listed neighbour would.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import select
import signal
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import networkx as nx
import zmq
import zmq.asyncio

from p2pfl.node import read_node_log
from p2pfl.security import generate_keys, load_node_keys
from p2pfl.topology import Topology, save_topology
from p2pfl.transport import free_tcp_ports
from p2pfl.transport.zeromq import node_metadata


def processes_mentioning(text: str) -> list[int]:
    """Ids of live processes whose command line contains ``text`` (a unique tmp path)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline:
            found.append(int(entry.name))
    return found


def wait_exit(pid: int, timeout: float) -> bool:
    """Whether process ``pid`` (any, not only a child) exits within ``timeout`` s.

    Waits on a pidfd (Linux >= 5.3): an event, no polling.
    """
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        ready, _, _ = select.select([fd], [], [], timeout)
    finally:
        os.close(fd)
    return bool(ready)


def no_leftover_processes(directory: Path) -> list[int]:
    """Kill what still runs for ``directory``; return those pids (a test asserts it is empty)."""
    leaked = processes_mentioning(str(directory))
    for pid in leaked:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return leaked


class LiveNet:
    """Node processes on 127.0.0.1 over a given graph; node ``attacker`` is the test's.

    The scenario file is written from ``rounds``, ``round_timeout``, ``aggregator``,
    ``f``, ``hello_timeout``, ``max_message_mb`` plus ``extra_toml``. ``secure``:
    every node of the graph (the attacker's too) gets keys in ``directory/keys``,
    recorded in the topology, and the nodes run with ``--keys``.
    """

    def __init__(
        self,
        directory: Path,
        graph: nx.Graph,
        *,
        attacker: int | None,
        rounds: int,
        round_timeout: float,
        aggregator: str = "mean",
        f: int = 0,
        hello_timeout: float = 20.0,
        max_message_mb: float = 256.0,
        extra_toml: str = "",
        secure: bool = False,
    ) -> None:
        self.dir = directory
        self.graph = graph
        self.attacker = attacker
        ports = free_tcp_ports(graph.number_of_nodes())
        self.addresses = {i: f"127.0.0.1:{p}" for i, p in zip(sorted(graph), ports, strict=True)}
        self.key_dir = directory / "keys" if secure else None
        public_keys = generate_keys(self.key_dir, sorted(graph)) if self.key_dir else {}
        save_topology(
            Topology(graph=graph, addresses=self.addresses, public_keys=public_keys),
            directory / "net.toml",
        )
        self.scenario = directory / "net.scenario.toml"
        self.scenario.write_text(
            f"[run]\nrounds = {rounds}\neval_every = {rounds}\n"
            '[topology]\nfile = "net.toml"\n'
            f'[byzantine]\ncount = 0\n[aggregator]\nname = "{aggregator}"\nf = {f}\n'
            f"[network]\nround_timeout = {round_timeout}\nhello_timeout = {hello_timeout}\n"
            f"max_message_mb = {max_message_mb}\n" + extra_toml
        )
        self.procs: dict[int, asyncio.subprocess.Process] = {}
        self.events: dict[int, list[dict[str, Any]]] = {}
        self._readers: list[asyncio.Task[None]] = []
        self._seen: dict[int, asyncio.Event] = {}

    @property
    def honest(self) -> list[int]:
        return [k for k in sorted(self.graph) if k != self.attacker]

    async def start(self) -> None:
        for k in self.honest:
            security = ["--insecure"] if self.key_dir is None else ["--keys", str(self.key_dir)]
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "p2pfl",
                "node",
                str(self.scenario),
                "--id",
                str(k),
                "--out",
                str(self.dir),
                *security,
                "--events",
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.DEVNULL,
                start_new_session=True,  # its own process group: close() kills the group
            )
            self.procs[k] = proc
            self.events[k] = []
            self._seen[k] = asyncio.Event()
            self._readers.append(asyncio.create_task(self._read(k, proc)))

    async def _read(self, k: int, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        async for line in proc.stdout:
            with contextlib.suppress(ValueError):
                event = json.loads(line)
                self.events[k].append(event)
                self._seen[k].set()

    async def until(self, k: int, what: str, round_: int = 0) -> dict[str, Any]:
        """Node ``k``'s first ``what`` event (at round >= ``round_`` for round events).

        AssertionError if the node exits first.
        """
        while True:
            for e in self.events[k]:
                if e.get("event") == what and e.get("round", 0) >= round_:
                    return e
            if self.procs[k].returncode is not None:
                raise AssertionError(f"node {k} exited before its {what} event")
            self._seen[k].clear()
            wait = asyncio.ensure_future(self._seen[k].wait())
            done = asyncio.ensure_future(self.procs[k].wait())
            try:
                await asyncio.wait({wait, done}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                wait.cancel()
                done.cancel()

    async def wait(self) -> dict[int, int]:
        """Wait for every node process to exit; their return codes."""
        codes = {k: await p.wait() for k, p in self.procs.items()}
        await asyncio.gather(*self._readers, return_exceptions=True)
        return codes

    async def close(self) -> None:
        """Kill every node's process group that is still running."""
        for proc in self.procs.values():
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                await proc.wait()
        for task in self._readers:
            task.cancel()
        await asyncio.gather(*self._readers, return_exceptions=True)

    def log(self, k: int) -> list[dict[str, Any]]:
        return read_node_log(self.dir / f"node-{k}.jsonl")

    def end(self, k: int) -> dict[str, Any]:
        ends = [e for e in self.log(k) if e["event"] == "end"]
        assert ends, f"node {k} logged no end event"
        return ends[-1]

    def rounds(self, k: int) -> list[dict[str, Any]]:
        return [e for e in self.log(k) if e["event"] == "round"]

    def attack(
        self, ctx: zmq.asyncio.Context, target: int, kind: int = zmq.PUSH
    ) -> zmq.asyncio.Socket:
        """A socket (PUSH unless ``kind`` says otherwise) connected to ``target`` as the
        attacker: with its CurveZMQ keys when secured, else declaring its node id in
        the connection metadata."""
        assert self.attacker is not None
        sock = ctx.socket(kind)
        sock.linger = 0
        sock.sndhwm = 1000
        if self.key_dir is not None:
            mine = load_node_keys(self.key_dir, self.attacker)
            sock.curve_serverkey = load_node_keys(self.key_dir, target).public
            sock.curve_publickey = mine.public
            sock.curve_secretkey = mine.secret
        else:
            sock.setsockopt(zmq.METADATA, node_metadata(self.attacker))
        sock.connect(f"tcp://{self.addresses[target]}")
        return sock

    def sink(self, ctx: zmq.asyncio.Context) -> zmq.asyncio.Socket:
        """A PULL bound at the attacker's address: takes whatever the nodes send it.

        Secured, it is a CURVE server with the attacker's keys and no ZAP handler
        in ``ctx``: every client is let in (fine for a sink that reads nothing).
        """
        assert self.attacker is not None
        sock = ctx.socket(zmq.PULL)
        sock.linger = 0
        if self.key_dir is not None:
            mine = load_node_keys(self.key_dir, self.attacker)
            sock.curve_server = True
            sock.curve_secretkey = mine.secret
            sock.curve_publickey = mine.public
        sock.bind(f"tcp://{self.addresses[self.attacker]}")
        return sock


def rejection_counts(end: Mapping[str, Any], peer: int) -> tuple[int, dict[str, int]]:
    """(accepted, rejected by reason) of ``peer`` in a node's end event."""
    by_peer = end["rejections"]["by_peer"].get(str(peer), {"accepted": 0, "rejected": {}})
    return int(by_peer["accepted"]), {k: int(v) for k, v in by_peer["rejected"].items()}


def ring_with_attacker(honest: int, attached_to: Iterable[int]) -> nx.Graph:
    """A ring of ``honest`` nodes plus node ``honest`` (the attacker) linked to ``attached_to``."""
    graph = nx.cycle_graph(honest) if honest > 2 else nx.path_graph(honest)
    for k in attached_to:
        graph.add_edge(honest, k)
    return graph
