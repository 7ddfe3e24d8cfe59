"""Which node processes ``p2pfl launch`` starts on this host, and with what command line.

Two cases:

- The scenario names a topology file (``topology.file``) with an address for every
  node: the nodes started are those whose address host is ``--host``; without
  ``--host``, every node, provided every address is local (``127.*``,
  ``localhost``, ``::1``). Public keys in the file mean ``--keys DIR`` is needed
  (or ``--insecure``); see :func:`p2pfl.security.security_for_node`.
- The scenario generates its topology (``topology.kind``): every node runs here,
  on ``network.host`` with free ports. The launcher builds the same graph and
  Byzantine set the simulator builds, generates one CurveZMQ key pair per node
  into ``OUT/keys`` (unless ``--insecure``), and writes the resolved topology to
  ``OUT/topology.toml``; every node process reads that file
  (``--set topology.file=...``), so all of them agree on addresses and keys.

Every node process gets the same scenario file and ``--set`` overrides as the
launcher, so it builds the same experiment, and ``--parent-pid`` (the launcher's
process id), so it stops when the launcher ends, however it ends.

The run id (``summary.json``, checked by ``p2pfl report``) is derived from the
resolved scenario and the topology (:func:`topology_identity`: nodes, edges,
addresses, public keys, Byzantine set): each host of a deployment launches its
share separately and, given the same files, they agree on it without talking. A
generated topology has fresh ports (and keys), so each such launch is a new run.
``--run-id`` sets it instead (a deployment run again with the same files).
"""

from __future__ import annotations

import io
import ipaddress
import json
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from p2pfl.config import Scenario, load_scenario
from p2pfl.errors import ConfigError
from p2pfl.experiment import Experiment, build_experiment
from p2pfl.launcher.outputs import NODE_DIR
from p2pfl.node.process import node_addresses
from p2pfl.node.setup import NodeSetup
from p2pfl.report import derive_run_id
from p2pfl.security import generate_keys, security_for_node
from p2pfl.topology import Topology, parse_address, save_topology
from p2pfl.transport import free_tcp_ports

TOPOLOGY_FILE = "topology.toml"
KEY_DIR = "keys"
RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def topology_identity(topology: Topology) -> dict[str, object]:
    """What makes two topology files the same deployment (whitespace and comments do not)."""
    return {
        "name": topology.name,
        "nodes": sorted(topology.graph.nodes),
        "edges": sorted(sorted(e) for e in topology.graph.edges),
        "addresses": {str(k): v for k, v in sorted(topology.addresses.items())},
        "public_keys": {str(k): v for k, v in sorted(topology.public_keys.items())},
        "byzantine": sorted(topology.byzantine),
    }


def check_run_id(run_id: str) -> str:
    if not RUN_ID.fullmatch(run_id):
        raise ConfigError(
            f"--run-id {run_id!r}: use 1 to 64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return run_id


def is_local_host(host: str) -> bool:
    """Whether ``host`` names this machine's loopback interface."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def nodes_on_host(topology: Topology, host: str | None) -> list[int]:
    """The nodes whose address is on ``host`` (``None``: all, if every address is local)."""
    hosts = {i: parse_address(a)[0] for i, a in topology.addresses.items()}
    if host is None:
        remote = sorted({h for h in hosts.values() if not is_local_host(h)})
        if remote:
            raise ConfigError(
                f"the topology's addresses are on host(s) {', '.join(remote)}: pass "
                "--host NAME to start the nodes whose address is on this machine"
            )
        return sorted(hosts)
    chosen = sorted(i for i, h in hosts.items() if h == host)
    if not chosen:
        known = ", ".join(sorted(set(hosts.values())))
        raise ConfigError(f"--host {host}: no node has an address on it; the hosts are: {known}")
    return chosen


@dataclass(frozen=True)
class LaunchPlan:
    """What to start: the scenario, the topology every node reads, and this host's nodes."""

    scenario: Scenario
    experiment: Experiment
    scenario_path: str | None
    overrides: tuple[str, ...]
    topology: Topology
    topology_file: Path
    nodes: list[int]
    key_dir: str | None
    insecure: bool
    out: Path
    run_id: str

    @property
    def node_dir(self) -> Path:
        return self.out / NODE_DIR

    def node_command(self, node: int) -> list[str]:
        """The ``p2pfl node`` command line of ``node``."""
        cmd = [sys.executable, "-m", "p2pfl", "node"]
        if self.scenario_path is not None:
            cmd.append(str(Path(self.scenario_path).resolve()))
        for override in self.overrides:
            cmd += ["--set", override]
        cmd += ["--id", str(node), "--out", str(self.node_dir), "--events"]
        cmd += ["--parent-pid", str(os.getpid())]
        if self.key_dir is not None:
            cmd += ["--keys", self.key_dir]
        if self.insecure:
            cmd.append("--insecure")
        return cmd


def plan_launch(
    scenario_path: str | None,
    overrides: Sequence[str],
    out: Path,
    *,
    host: str | None = None,
    key_dir: str | None = None,
    insecure: bool = False,
    run_id: str | None = None,
) -> LaunchPlan:
    """Check the scenario, resolve the topology (writing files into ``out`` if generated)."""
    scenario = load_scenario(scenario_path, overrides)
    if run_id is not None:
        check_run_id(run_id)
    insecure = insecure or scenario.network.insecure
    if insecure and key_dir is not None:
        raise ConfigError("--insecure and --keys exclude each other: pick one")
    exp = build_experiment(scenario)
    NodeSetup.from_experiment(exp, 0)  # refuses what cannot run as processes (omniscient attacks)
    overrides = tuple(overrides)
    if scenario.topology.file:
        topology = exp.topology
        topology_file = scenario.resolve_path(scenario.topology.file)
        node_addresses(scenario, topology, list(range(exp.n)))
        nodes = nodes_on_host(topology, host)
    else:
        if host is not None and host != scenario.network.host:
            raise ConfigError(
                f"--host {host}: the scenario generates its topology, so every node runs on "
                f"network.host = {scenario.network.host}; name a topology file with addresses "
                "(topology.file) to spread nodes over machines"
            )
        if key_dir is not None:
            raise ConfigError(
                "--keys: the scenario generates its topology, which has no public keys; "
                "p2pfl launch creates the keys itself (in OUT/keys)"
            )
        nodes = list(range(exp.n))
        net_host = scenario.network.host
        shown = f"[{net_host}]" if ":" in net_host and not net_host.startswith("[") else net_host
        ports = free_tcp_ports(exp.n, net_host.strip("[]"))
        public_keys: dict[int, str] = {}
        if not insecure:
            key_dir = str((out / KEY_DIR).resolve())
            public_keys = generate_keys(key_dir, nodes, force=True)
        topology = Topology(
            graph=exp.topology.graph,
            addresses={i: f"{shown}:{ports[i]}" for i in nodes},
            byzantine=exp.byzantine,
            public_keys=public_keys,
            name=exp.topology.name or scenario.topology.kind,
        )
        topology_file = (out / TOPOLOGY_FILE).resolve()
        save_topology(topology, topology_file)
        overrides = (*overrides, f"topology.file={json.dumps(str(topology_file))}")
    # The check every node process will make, made once here with a clear error.
    security_for_node(topology, nodes[0], key_dir, insecure=insecure, stream=io.StringIO())
    return LaunchPlan(
        scenario=scenario,
        experiment=exp,
        scenario_path=scenario_path,
        overrides=overrides,
        topology=topology,
        topology_file=topology_file,
        nodes=nodes,
        key_dir=key_dir,
        insecure=insecure,
        out=out,
        run_id=run_id or derive_run_id(scenario.identity(), topology_identity(topology)),
    )
