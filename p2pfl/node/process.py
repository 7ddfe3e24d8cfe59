"""One node as an OS process: scenario + node id in, a finished :class:`~p2pfl.node.Node` out.

:func:`run_node_process` builds the experiment exactly as the simulator does,
cuts out node ``k``'s share (:meth:`NodeSetup.from_experiment`), opens a ZeroMQ
transport at node ``k``'s address from the scenario's topology file (secured
with CurveZMQ unless ``--insecure``, see :func:`p2pfl.security.security_for_node`)
and runs the node. SIGINT, SIGTERM and SIGHUP cancel the run: the node says bye to its
neighbours, its log is flushed, sockets are closed and the process exits with
``128 + signal``. On success it writes, into ``out_dir``:

- ``node-<k>.jsonl``: its event log (:mod:`p2pfl.node.metrics`);
- ``node-<k>.npy``: its final parameter vector (float32, ``numpy.save`` without
  pickle), which ``p2pfl launch`` compares across nodes and with the simulator;
- ``checkpoints/node-<k>.round-<r>.ckpt``: with ``network.checkpoint_every = k``,
  its state every ``k`` rounds, the newest two kept (:mod:`p2pfl.checkpoint`).

``resume=True`` (``p2pfl node --resume``) restarts from the newest checkpoint in
``out_dir/checkpoints`` (see "Restart and catch-up" in :mod:`p2pfl.node.node`); the
previous run's log is kept as ``node-<k>.before-resume-<i>.jsonl``. With no
checkpoint there, a warning is printed and the node starts at round 1; a damaged
checkpoint or one of another node or model is a
:class:`~p2pfl.checkpoint.CheckpointError` naming the file.

Torch runs one thread per process: many node processes share a machine's cores.
"""

from __future__ import annotations

import asyncio
import ipaddress
import signal
import sys
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from p2pfl._compat import uncancel
from p2pfl.checkpoint import Checkpoint, load_checkpoint
from p2pfl.config import Scenario
from p2pfl.errors import ConfigError
from p2pfl.node.metrics import NodeLog
from p2pfl.node.node import Node
from p2pfl.node.setup import NodeSetup
from p2pfl.security import SecurityContext, security_for_node
from p2pfl.topology import Topology, parse_address
from p2pfl.transport import TransportError, TransportOptions, ZmqTransport, inbound_frame_limit

LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})

#: Signals that stop a node cleanly (SIGHUP: its terminal or ssh session went away).
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def log_path(out_dir: str | Path, node_id: int) -> Path:
    return Path(out_dir) / f"node-{node_id}.jsonl"


def params_path(out_dir: str | Path, node_id: int) -> Path:
    return Path(out_dir) / f"node-{node_id}.npy"


def checkpoint_dir(out_dir: str | Path) -> Path:
    """Where a node writing its outputs to ``out_dir`` keeps its checkpoints."""
    return Path(out_dir) / "checkpoints"


def keep_previous_log(out_dir: str | Path, node_id: int) -> Path | None:
    """Rename an existing ``node-<k>.jsonl`` to the first free ``node-<k>.before-resume-<i>.jsonl``."""
    current = log_path(out_dir, node_id)
    if not current.exists():
        return None
    i = 1
    while (kept := Path(out_dir) / f"node-{node_id}.before-resume-{i}.jsonl").exists():
        i += 1
    current.rename(kept)
    return kept


def bind_address(address: str) -> str:
    """Where a node listening at ``address`` binds: the IP itself, else every interface.

    ZeroMQ binds to interfaces, not DNS names, so ``machine-a:5555`` binds
    ``*:5555``; ``localhost`` binds the loopback interface only.
    """
    host, port = parse_address(address)
    if host == "localhost":
        return f"127.0.0.1:{port}"
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return f"*:{port}"
    return f"{host}:{port}"


def node_addresses(scenario: Scenario, topology: Topology, nodes: list[int]) -> dict[int, str]:
    """The addresses of ``nodes`` from the scenario's topology file; ConfigError if any is missing."""
    if not scenario.topology.file:
        raise ConfigError(
            "topology.file: a node process needs a topology file with node addresses "
            f"(the scenario generates its topology with topology.kind = {scenario.topology.kind!r}); "
            "write one with `p2pfl topology generate ... --base-port P`, or run every node "
            "on this machine with `p2pfl launch`"
        )
    missing = [i for i in nodes if i not in topology.addresses]
    if missing:
        raise ConfigError(
            f"topology.file {scenario.topology.file}: no address for node(s) {missing}; "
            'every node needs `address = "host:port"`'
        )
    return {i: topology.addresses[i] for i in nodes}


def run_node_process(
    scenario: Scenario,
    node_id: int,
    out_dir: str | Path,
    *,
    key_dir: str | None = None,
    insecure: bool = False,
    echo_events: bool = False,
    resume: bool = False,
) -> int:
    """Run node ``node_id`` of ``scenario`` to the end; the process exit status.

    0: every round done; ``128 + signal``: stopped by SIGINT/SIGTERM/SIGHUP. Configuration
    problems raise :class:`~p2pfl.errors.ConfigError` before any socket opens; so does
    an address that cannot be bound (in use), naming node and address.
    """
    torch.set_num_threads(1)
    from p2pfl.experiment import build_experiment

    exp = build_experiment(scenario)
    setup = NodeSetup.from_experiment(exp, node_id)
    addresses = node_addresses(scenario, exp.topology, [node_id, *setup.neighbours])
    security = security_for_node(
        exp.topology, node_id, key_dir, insecure=insecure or scenario.network.insecure
    )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ckpt: Checkpoint | None = None
    if resume:
        ckpt = load_checkpoint(
            checkpoint_dir(out), node_id, param_count=setup.d, fingerprint=setup.fingerprint
        )
        if ckpt is None:
            print(
                f"warning: node {node_id}: --resume but no checkpoint in {checkpoint_dir(out)}; "
                "starting at round 1",
                file=sys.stderr,
            )
        else:
            keep_previous_log(out, node_id)
    # warnings go to stderr, unless events are echoed (a launcher prints them itself)
    log = NodeLog(
        node_id,
        log_path(out, node_id),
        echo=sys.stdout if echo_events else None,
        warnings=None if echo_events else sys.stderr,
    )
    try:
        return asyncio.run(_serve(setup, addresses, security, log, out, ckpt))
    finally:
        log.close()


async def _serve(
    setup: NodeSetup,
    addresses: Mapping[int, str],
    security: SecurityContext,
    log: NodeLog,
    out: Path,
    resume: Checkpoint | None = None,
) -> int:
    loop = asyncio.get_running_loop()
    main = asyncio.current_task()
    assert main is not None
    caught: list[int] = []

    def stop(signum: int) -> None:
        if not caught:  # a second signal while saying bye changes nothing
            caught.append(signum)
            main.cancel()

    for signum in STOP_SIGNALS:
        loop.add_signal_handler(signum, stop, signum)
    me = setup.node_id
    peers = {j: addresses[j] for j in setup.neighbours}
    # frames as large as one vector plus a header (the model's float32 vector, or the
    # run's compressed one if larger: sparse with most values); max_message_mb only caps it
    max_bytes = inbound_frame_limit(
        max(setup.initial.nbytes, setup.compression.encoding(setup.d).payload_bytes),
        cap_bytes=int(setup.network.max_message_mb * 2**20),
        cap_name="network.max_message_mb",
    )
    with security.socket_hook() as hook:
        options = TransportOptions(max_message_bytes=max_bytes, configure_socket=hook)
        try:
            transport = ZmqTransport(me, bind_address(addresses[me]), peers, options=options)
        except TransportError as exc:  # the address is in use, or not this machine's
            raise ConfigError(f"node {me} at {addresses[me]}: {exc}") from None
        try:
            node = Node(
                setup,
                transport,
                log=log,
                sender_of=security.sender_of,
                checkpoint_dir=str(checkpoint_dir(out)) if setup.network.checkpoint_every else None,
                resume=resume,
            )
            try:
                result = await node.run()
            except asyncio.CancelledError:
                if not caught:
                    raise
                uncancel(main)
                return 128 + caught[0]
            np.save(params_path(out, me), result.params.numpy(), allow_pickle=False)
            return 0
        finally:
            await transport.close()
            for signum in STOP_SIGNALS:
                loop.remove_signal_handler(signum)
