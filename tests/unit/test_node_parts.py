"""The node's pieces on their own: inbox, outbox, event log, addresses, launch helpers."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import networkx as nx
import numpy as np
import pytest
import torch

from p2pfl.config import load_scenario
from p2pfl.errors import ConfigError
from p2pfl.launcher import NodeExit, nodes_on_host
from p2pfl.launcher.outputs import add_final_distances, merge_runs, write_run
from p2pfl.node import NodeLog, Outbox, RoundInbox, eval_records, read_node_log
from p2pfl.node.process import bind_address, node_addresses
from p2pfl.topology import Topology
from p2pfl.transport import MemoryNetwork, MemoryTransport, TransportOptions

pytestmark = pytest.mark.timeout(30)

V = torch.zeros(3)


# ----------------------------------------------------------------------------- inbox


def test_inbox_keeps_current_and_near_future_rounds_and_counts_every_drop() -> None:
    inbox = RoundInbox([1, 2], rounds_ahead=2)
    inbox.advance(3)

    outcomes = [
        inbox.put(1, 3, V),
        inbox.put(1, 5, V),
        inbox.put(1, 2, V),
        inbox.put(1, 6, V),
        inbox.put(1, 3, V),
        inbox.put(7, 3, V),
    ]

    assert outcomes == ["accepted", "accepted", "stale", "ahead", "duplicate", "unknown_peer"]
    assert inbox.dropped == {"stale": 1, "ahead": 1, "duplicate": 1, "unknown_peer": 1}
    assert inbox.buffered() == 2


def test_inbox_memory_is_bounded_by_the_window() -> None:
    inbox = RoundInbox(range(4), rounds_ahead=1)
    for r in range(50):
        inbox.advance(r)
        for sender in range(4):
            for ahead in range(5):
                inbox.put(sender, r + ahead, V)
        assert inbox.buffered() <= 2 * 4


def test_inbox_counts_vectors_left_behind_but_not_those_taken() -> None:
    inbox = RoundInbox([1, 2])
    inbox.advance(1)
    inbox.put(1, 1, V)
    inbox.put(2, 1, V)
    assert sorted(inbox.received()) == [1, 2]
    inbox.take([1, 2])
    inbox.put(1, 2, V)  # round 2 left before anyone takes it
    inbox.advance(3)

    assert inbox.unused == 1


def test_inbox_going_back_is_an_error() -> None:
    inbox = RoundInbox([1])
    inbox.advance(4)
    with pytest.raises(ValueError, match="cannot go back from round 4 to round 3"):
        inbox.advance(3)
    with pytest.raises(ValueError, match="rounds_ahead must be a non-negative int"):
        RoundInbox([1], rounds_ahead=-1)


# ----------------------------------------------------------------------------- outbox


async def test_outbox_keeps_order_per_peer_and_drops_the_oldest_when_full() -> None:
    net = MemoryNetwork()
    options = TransportOptions(send_timeout_s=0.2)
    sender = MemoryTransport(net, 0, "127.0.0.1:0", {1: "127.0.0.1:45001"}, options=options)
    receiver = MemoryTransport(net, 1, "127.0.0.1:45001", {0: sender.endpoint}, options=options)
    try:
        async with Outbox(sender, [1], capacity=2) as outbox:
            for k in range(5):  # nothing runs in between: the queue holds 2
                outbox.put(1, [b"m%d" % k])
            assert outbox.dropped == 3
            assert await outbox.drain(5.0)
        got = [bytes(memoryview((await receiver.recv()).frames[0])) for _ in range(2)]  # type: ignore[arg-type]
    finally:
        await sender.close()
        await receiver.close()

    assert got == [b"m3", b"m4"]


async def test_outbox_drain_times_out_on_a_peer_that_never_comes() -> None:
    net = MemoryNetwork()
    options = TransportOptions(send_timeout_s=5.0)
    sender = MemoryTransport(net, 0, "127.0.0.1:0", {1: "127.0.0.1:45002"}, options=options)
    try:
        async with Outbox(sender, [1]) as outbox:
            outbox.put(1, [b"hello?"])
            assert not await outbox.drain(0.1)
    finally:
        await sender.close()
    with pytest.raises(ValueError, match="capacity must be a positive int"):
        Outbox(sender, [1], capacity=0)


async def test_outbox_retries_a_message_for_a_live_peer_until_it_can_take_it() -> None:
    # The peer binds only after several send timeouts: a vector must still reach it.
    net = MemoryNetwork()
    options = TransportOptions(send_timeout_s=0.05)
    sender = MemoryTransport(net, 0, "127.0.0.1:0", {1: "127.0.0.1:45003"}, options=options)
    alive = {1: True}
    try:
        async with Outbox(sender, [1], keep_trying=lambda p: alive[p]) as outbox:
            outbox.put(1, [b"vector"])
            while outbox.retried < 3:  # three timeouts: the peer is late
                await asyncio.sleep(0.01)
            receiver = MemoryTransport(
                net, 1, "127.0.0.1:45003", {0: sender.endpoint}, options=options
            )
            assert await outbox.drain(10.0)
            got = await receiver.recv()
            await receiver.close()
    finally:
        await sender.close()

    assert bytes(memoryview(got.frames[0])) == b"vector"  # type: ignore[arg-type]


async def test_outbox_gives_up_on_a_dead_peer_and_offers_only_to_an_idle_queue() -> None:
    net = MemoryNetwork()
    options = TransportOptions(send_timeout_s=0.05)
    sender = MemoryTransport(net, 0, "127.0.0.1:0", {1: "127.0.0.1:45004"}, options=options)
    try:
        async with Outbox(sender, [1], keep_trying=lambda p: False) as outbox:
            outbox.put(1, [b"to nobody"])
            assert not outbox.offer(1, [b"heartbeat"])  # the queue is busy
            assert await outbox.drain(5.0)  # given up after one timeout: the peer is dead
            assert outbox.retried == 0
            assert outbox.offer(1, [b"heartbeat"])
            assert await outbox.drain(5.0)
    finally:
        await sender.close()

    assert sender.stats.dropped == 2


# ----------------------------------------------------------------------------- log


def test_node_log_lines_read_back_and_a_torn_last_line_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "node-3.jsonl"
    log = NodeLog(3, path)
    log.event("start", neighbours=[1, 2])
    log.event(
        "eval", round=2, byzantine=False, accuracy=0.5, test_loss=1.0, train_loss=float("nan")
    )
    log.close()
    with path.open("a") as fh:
        fh.write('{"event": "round", "no')  # killed mid-write

    events = read_node_log(path)

    assert [e["event"] for e in events] == ["start", "eval"]
    assert eval_records(events) == [
        {
            "round": 2,
            "node": 3,
            "byzantine": False,
            "accuracy": 0.5,
            "test_loss": 1.0,
            "train_loss": None,
            "distance_to_mean": None,
        }
    ]


def test_node_log_with_a_corrupt_middle_line_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "node-0.jsonl"
    path.write_text('{"event": "start", "node": 0}\nnot json\n{"event": "end", "node": 0}\n')
    with pytest.raises(ConfigError, match=r"node-0.jsonl:2: not JSON"):
        read_node_log(path)
    with pytest.raises(ConfigError, match="no such node log"):
        read_node_log(tmp_path / "missing.jsonl")


# ----------------------------------------------------------------------------- addresses


@pytest.mark.parametrize(
    ("address", "bind"),
    [
        ("127.0.0.1:5000", "127.0.0.1:5000"),
        ("localhost:5001", "127.0.0.1:5001"),
        ("10.1.2.3:5002", "10.1.2.3:5002"),
        ("machine-a.lan:5003", "*:5003"),
        ("[::1]:5004", "[::1]:5004"),
    ],
)
def test_bind_address(address: str, bind: str) -> None:
    assert bind_address(address) == bind


def test_node_process_needs_a_topology_file_with_addresses() -> None:
    generated = load_scenario(None, [])
    topo = Topology(graph=nx.path_graph(3), addresses={0: "127.0.0.1:5000"})
    with pytest.raises(ConfigError, match=r"topology\.file: a node process needs a topology file"):
        node_addresses(generated, topo, [0])
    with_file = load_scenario(None, ["topology.file=t.toml"])
    with pytest.raises(ConfigError, match=r"no address for node\(s\) \[1, 2\]"):
        node_addresses(with_file, topo, [0, 1, 2])
    assert node_addresses(with_file, topo, [0]) == {0: "127.0.0.1:5000"}


def test_nodes_on_host_selects_by_address_host() -> None:
    graph = nx.path_graph(4)
    local = Topology(graph=graph, addresses={i: f"127.0.0.1:{5000 + i}" for i in range(4)})
    spread = Topology(
        graph=graph,
        addresses={0: "a:5000", 1: "a:5001", 2: "b:5000", 3: "127.0.0.1:5003"},
    )

    assert nodes_on_host(local, None) == [0, 1, 2, 3]
    assert nodes_on_host(spread, "a") == [0, 1]
    assert nodes_on_host(spread, "b") == [2]
    with pytest.raises(ConfigError, match=r"on host\(s\) a, b: pass --host NAME"):
        nodes_on_host(spread, None)
    with pytest.raises(ConfigError, match="--host c: no node has an address on it"):
        nodes_on_host(spread, "c")


# ----------------------------------------------------------------------------- exits


def test_node_exit_reasons_name_the_signal_or_code() -> None:
    assert NodeExit(0, 0).describe() == "node 0 completed"
    assert NodeExit(3, -signal.SIGKILL).describe() == "node 3 killed by SIGKILL"
    assert NodeExit(4, 128 + signal.SIGTERM).reason == "stopped by SIGTERM (exit code 143)"
    assert (
        NodeExit(5, 2, ("Traceback", "ConfigError: bad")).describe()
        == "node 5 exited with code 2: Traceback | ConfigError: bad"
    )


# ----------------------------------------------------------------------------- outputs


def record(round_: int, node: int, acc: float, byz: bool = False) -> dict[str, object]:
    return {
        "round": round_,
        "node": node,
        "byzantine": byz,
        "accuracy": acc,
        "test_loss": 1.0,
        "train_loss": 1.0,
        "distance_to_mean": None,
    }


def test_final_distances_are_to_the_honest_mean() -> None:
    records = [record(1, 0, 0.5), record(2, 0, 0.5), record(2, 1, 0.5), record(2, 2, 0.1, True)]
    params = {
        0: np.array([1.0, 0.0], dtype=np.float32),
        1: np.array([3.0, 0.0], dtype=np.float32),
        2: np.array([100.0, 0.0], dtype=np.float32),
    }

    add_final_distances(records, params, byzantine=[2], final_round=2)

    assert [r["distance_to_mean"] for r in records] == [None, 1.0, 1.0, 98.0**2]


def _host_dir(root: Path, nodes: list[int], scenario: dict[str, object]) -> Path:
    run = root
    run.mkdir()
    records = [record(r, k, 0.1 * r + 0.01 * k) for r in (1, 2) for k in nodes]
    write_run(
        run,
        records,
        scenario,
        1.0,
        {"byzantine_nodes": [], "nodes": 4},
        topology=None,
        title="t",
        plots=False,
    )
    (run / "nodes").mkdir()
    for k in nodes:
        np.save(
            run / "nodes" / f"node-{k}.npy", np.full(2, k, dtype=np.float32), allow_pickle=False
        )
    return run


def test_merge_runs_combines_hosts_and_refuses_mixed_scenarios(tmp_path: Path) -> None:
    scenario = load_scenario(None, []).to_dict()
    a = _host_dir(tmp_path / "a", [0, 1], scenario)
    b = _host_dir(tmp_path / "b", [2, 3], scenario)

    merged = merge_runs([a, b])

    assert sorted({r["node"] for r in merged.records}) == [0, 1, 2, 3]
    assert sorted(merged.params) == [0, 1, 2, 3]
    other = dict(scenario, run=dict(scenario["run"], seed=9))
    c = _host_dir(tmp_path / "c", [2, 3], other)
    with pytest.raises(ConfigError, match="ran a different scenario"):
        merge_runs([a, c])
    with pytest.raises(ConfigError, match="node 0 has outputs in both"):
        merge_runs([a, _host_dir(tmp_path / "d", [0], scenario)])
    with pytest.raises(ConfigError, match=r"no summary\.json"):
        merge_runs([tmp_path])
