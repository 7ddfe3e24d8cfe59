"""The node on the in-memory transport: simulator parity, faults, hostile input, shutdown.

A whole network of :class:`Node` objects runs in one event loop on a
:class:`MemoryNetwork`; the simulator runs the same experiment; rows must match.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Sequence

import numpy as np
import pytest
import torch

from p2pfl import wire
from p2pfl.aggregators import make_aggregator
from p2pfl.checkpoint import load_checkpoint
from p2pfl.config import load_scenario
from p2pfl.errors import ConfigError, ProtocolError
from p2pfl.experiment import Experiment, build_experiment
from p2pfl.node import Node, NodeLog, NodeResult, NodeSetup
from p2pfl.sim import SimResult, Simulation
from p2pfl.transport import MemoryNetwork, MemoryTransport, TransportOptions

pytestmark = pytest.mark.timeout(60)

OPTIONS = TransportOptions(send_timeout_s=0.2)
BASE = [
    "topology.kind=ring",
    "topology.n=6",
    "topology.params={}",
    "run.rounds=4",
    "run.eval_every=2",
    "model.params.hidden=[16]",
    "training.local_steps=2",
    "network.round_timeout=5.0",
    "network.hello_timeout=5.0",
    "network.heartbeat_interval=0.05",
    "network.dead_after=0.5",
]


def experiment(*overrides: str) -> Experiment:
    return build_experiment(load_scenario(None, [*BASE, *overrides]))


def address(i: int) -> str:
    return f"127.0.0.1:{41000 + i}"


class Network:
    """Transports for some nodes of ``exp`` on one MemoryNetwork; closes them all."""

    def __init__(self, exp: Experiment, nodes: Sequence[int] | None = None) -> None:
        self.exp = exp
        self.net = MemoryNetwork()
        self.transports: dict[int, MemoryTransport] = {}
        for i in range(exp.n) if nodes is None else nodes:
            self.add(i)

    def add(self, i: int) -> MemoryTransport:
        peers = {j: address(j) for j in self.exp.neighbours(i)}
        t = MemoryTransport(self.net, i, address(i), peers, options=OPTIONS)
        self.transports[i] = t
        return t

    def node(self, i: int) -> Node:
        return Node(NodeSetup.from_experiment(self.exp, i), self.transports[i])

    async def close(self) -> None:
        for t in self.transports.values():
            await t.close()


async def run_all(exp: Experiment) -> dict[int, NodeResult]:
    network = Network(exp)
    try:
        nodes = [network.node(i) for i in range(exp.n)]
        results = await asyncio.gather(*(n.run() for n in nodes))
    finally:
        await network.close()
    return {r.node_id: r for r in results}


def assert_parity_of_accuracies(exp: Experiment, results: dict[int, NodeResult]) -> SimResult:
    sim = Simulation(exp).run()
    for m in sim.history:
        for i in range(exp.n):
            (rec,) = [e for e in results[i].evaluations if e["round"] == m.round]
            assert rec["accuracy"] == pytest.approx(float(m.accuracy[i]), abs=1e-6)
            assert rec["byzantine"] == (i in exp.byzantine)
    return sim


def assert_parity(exp: Experiment, results: dict[int, NodeResult]) -> SimResult:
    sim = assert_parity_of_accuracies(exp, results)
    for m in sim.history:
        for i in range(exp.n):
            (rec,) = [e for e in results[i].evaluations if e["round"] == m.round]
            assert rec["train_loss"] == pytest.approx(float(m.train_loss[i]), rel=1e-5)
    for i in range(exp.n):
        torch.testing.assert_close(results[i].params, sim.params[i], rtol=1e-5, atol=1e-6)
    return sim


@pytest.mark.parametrize(
    "overrides",
    [
        ("byzantine.count=0", "aggregator.name=mean", "aggregator.f=0"),
        ("byzantine.count=1", "byzantine.attack=sign_flip", "aggregator.name=median"),
        ("byzantine.count=1", "byzantine.attack=alie", "aggregator.name=trimmed_mean"),
        ("byzantine.count=1", "byzantine.attack=label_flip", "aggregator.name=median"),
        ("byzantine.nodes=[1,2]", "byzantine.attack=gaussian", "aggregator.name=median"),
        (
            "byzantine.count=1",
            "byzantine.attack=sign_flip",
            "aggregator.name=median",
            "compression.name=top_k",
            "compression.params.ratio=0.05",
            "compression.scheme=choco",
        ),
        (
            "byzantine.count=1",
            "byzantine.attack=alie",
            "aggregator.name=trimmed_mean",
            "compression.name=int8",
            "compression.params.block=64",
            "compression.error_feedback=true",
        ),
        (
            "byzantine.count=0",
            "aggregator.name=gossip",
            "aggregator.f=0",
            "compression.name=qsgd",
            "compression.scheme=choco",
        ),
        (
            "byzantine.count=1",
            "byzantine.attack=ipm",
            "aggregator.name=median",
            "compression.name=random_k",
            "compression.params.ratio=0.1",
        ),
        ("byzantine.count=0", "aggregator.name=mean", "aggregator.f=0", "compression.name=bf16"),
    ],
    ids=[
        "honest-mean",
        "signflip-median",
        "alie-trimmed",
        "labelflip-median",
        "two-colluders",
        "choco-topk-signflip",
        "int8-feedback-alie",
        "choco-qsgd-gossip",
        "randomk-ipm",
        "bf16-mean",
    ],
)
async def test_in_memory_network_matches_the_simulator(overrides: tuple[str, ...]) -> None:
    exp = experiment(*overrides)

    results = await run_all(exp)

    sim = assert_parity(exp, results)
    # what each node's transport took, header and payload, is what the simulator counts
    assert [r.counters.bytes_sent for _, r in sorted(results.items())] == sim.bytes_sent
    assert all(r.rounds_completed == exp.scenario.run.rounds for r in results.values())
    assert all(r.counters.rounds_incomplete == 0 for r in results.values())


async def test_fang_in_the_network_follows_the_simulator() -> None:
    # Fang's attack takes the sign of (honest mean - the attacker's model before the
    # round), which turns last-bit differences between a batched and a single-node
    # computation into a different sign at the odd coordinate: equal up to those.
    exp = experiment("byzantine.count=1", "byzantine.attack=fang_median", "aggregator.name=median")

    results = await run_all(exp)

    sim = Simulation(exp).run()
    for m in sim.history:
        for i in range(exp.n):
            (rec,) = [e for e in results[i].evaluations if e["round"] == m.round]
            assert rec["accuracy"] == pytest.approx(float(m.accuracy[i]), abs=2e-3)
    for i in range(exp.n):
        gap = float((results[i].params - sim.params[i]).norm() / sim.params[i].norm())
        assert gap < 1e-3, (i, gap)


async def test_silent_attackers_send_nothing_and_cost_their_neighbours_a_deadline() -> None:
    # No parity here: a neighbour that waited out a deadline sends its next vector late,
    # which its own neighbours may miss in turn (the simulator has no clock).
    exp = experiment(
        "byzantine.nodes=[3]",
        "byzantine.attack=silent",
        "aggregator.name=mean",
        "aggregator.f=0",
        "run.rounds=2",
        "network.round_timeout=0.3",
        "network.hello_timeout=0.5",
    )
    network = Network(exp)
    logs = {i: NodeLog(i) for i in range(exp.n)}
    try:
        nodes = [
            Node(NodeSetup.from_experiment(exp, i), network.transports[i], log=logs[i])
            for i in range(exp.n)
        ]
        results = await asyncio.gather(*(n.run() for n in nodes))
    finally:
        await network.close()

    assert [r.rounds_completed for r in results] == [2] * exp.n
    for i in (2, 4):
        rounds = [e for e in logs[i].events if e["event"] == "round"]
        assert all(3 in e["missing"] and 3 not in e["received"] for e in rounds)
    first = next(e for e in logs[3].events if e["event"] == "round")
    assert first["received"] == [2, 4]  # the silent node still listens


async def test_a_neighbour_that_never_comes_is_waited_for_at_most_the_deadline() -> None:
    exp = experiment(
        "byzantine.count=0",
        "aggregator.name=mean",
        "aggregator.f=0",
        "network.round_timeout=0.3",
        "network.hello_timeout=0.5",
        "run.rounds=3",
    )
    network = Network(exp, nodes=[0, 1, 2, 3, 4])  # node 5 never starts
    logs = {i: NodeLog(i) for i in (0, 4)}
    try:
        nodes = [
            Node(NodeSetup.from_experiment(exp, i), network.transports[i], log=logs.get(i))
            for i in range(5)
        ]
        loop = asyncio.get_running_loop()
        start = loop.time()
        results = await asyncio.gather(*(n.run() for n in nodes))
        elapsed = loop.time() - start
    finally:
        await network.close()

    assert [r.rounds_completed for r in results] == [3] * 5
    hello = next(e for e in logs[0].events if e["event"] == "hello")
    assert hello["missing"] == [5]
    rounds = [e for e in logs[0].events if e["event"] == "round"]
    assert [e["missing"] for e in rounds] == [[5], [5], [5]]
    assert all(e["wait_seconds"] < 0.3 for e in rounds)  # suspected since the hello: no wait
    assert results[0].counters.rounds_incomplete == 3
    assert results[2].counters.rounds_incomplete == 0
    assert elapsed < 10


async def test_no_neighbour_answering_is_a_clear_error() -> None:
    exp = experiment("byzantine.count=0", "network.hello_timeout=0.3")
    network = Network(exp, nodes=[0])
    log = NodeLog(0)
    try:
        node = Node(NodeSetup.from_experiment(exp, 0), network.transports[0], log=log)
        with pytest.raises(
            ProtocolError, match=r"no neighbour answered within network\.hello_timeout = 0\.3 s"
        ):
            await node.run()
    finally:
        await network.close()
    assert log.events[-1]["event"] == "end"
    assert log.events[-1]["status"] == "failed"


async def test_a_neighbour_with_another_model_fails_the_handshake_by_name() -> None:
    exp = experiment("byzantine.count=0", "network.hello_timeout=5.0")
    network = Network(exp, nodes=[0, 1])
    setup = NodeSetup.from_experiment(exp, 0)
    imposter = network.transports[1]

    async def announce_other_model() -> None:
        await imposter.send(0, wire.encode(wire.Hello(1, "0.1.0", "f" * 16, setup.d, 0)))

    try:
        node = Node(setup, network.transports[0])
        with pytest.raises(ProtocolError, match=r"neighbour\(s\) 1 announced a different model"):
            await asyncio.gather(node.run(), announce_other_model())
    finally:
        await network.close()
    assert node.counters.rejections.of(1) == {"wrong_model": 1}


async def test_hostile_and_late_messages_are_counted_and_never_stop_the_node() -> None:
    exp = experiment("byzantine.count=0", "aggregator.name=mean", "aggregator.f=0", "run.rounds=3")
    network = Network(exp)
    d = exp.initial.numel()
    fake = network.transports[1]  # node 1 is played by hand: a neighbour of nodes 0 and 2
    log = NodeLog(0)
    node0 = Node(NodeSetup.from_experiment(exp, 0), network.transports[0], log=log)
    others = [network.node(i) for i in range(2, exp.n)]

    async def neighbour_one() -> None:
        fp = NodeSetup.from_experiment(exp, 1).fingerprint
        for peer in (0, 2):
            await fake.send(peer, wire.encode(wire.Hello(1, "x", fp, d, 0)))
        for frames in (
            [b"\x00not msgpack"],
            wire.encode(wire.Params(1, 1, torch.full((d,), float("nan")))),
            wire.encode(wire.Params(1, 1, torch.zeros(d + 1))),
            wire.encode(wire.Params(1, 99, torch.zeros(d))),
        ):
            await fake.send(0, frames)
        for r in range(1, 4):  # lockstep: our round-r vector once both neighbours sent theirs
            waiting = {0, 2}
            while waiting:
                message = wire.decode((await fake.recv()).frames)
                if isinstance(message, wire.Params) and message.round == r:
                    waiting.discard(message.sender)
            frames = wire.encode(wire.Params(1, r, exp.initial))
            await fake.send(2, frames)
            await fake.send(0, frames)
            await fake.send(0, frames)  # a duplicate
            if r == 3:  # round 1 again, two rounds late: still remembered, a duplicate
                await fake.send(0, wire.encode(wire.Params(1, 1, exp.initial)))
        for peer in (0, 2):
            await fake.send(peer, wire.encode(wire.Bye(1, "done")))

    try:
        results = await asyncio.gather(node0.run(), neighbour_one(), *(n.run() for n in others))
    finally:
        await network.close()

    first = results[0]
    assert isinstance(first, NodeResult)
    assert first.rounds_completed == 3
    assert first.counters.rounds_incomplete == 0
    reasons = node0.counters.rejections.by_reason()
    assert {
        k: reasons.get(k) for k in ("decode_error", "non_finite", "wrong_length", "future_round")
    } == {"decode_error": 1, "non_finite": 1, "wrong_length": 1, "future_round": 1}
    assert reasons["duplicate"] == 4 and "stale_round" not in reasons
    end = next(e for e in log.events if e["event"] == "end")
    assert end["status"] == "done"
    assert end["rejections"]["rejected"] == 8


async def test_too_few_inputs_keeps_the_own_vector_and_counts_it() -> None:
    # Krum with f=1 needs 2f+3 = 5 vectors; a ring node has 3.
    exp = experiment("byzantine.count=0", "aggregator.name=mean", "aggregator.f=0", "run.rounds=2")
    setups = [NodeSetup.from_experiment(exp, i) for i in range(exp.n)]
    krum = make_aggregator("krum", {})
    setups[0] = dataclasses.replace(setups[0], aggregator=krum, f=1)
    network = Network(exp)
    try:
        nodes = [Node(s, network.transports[s.node_id]) for s in setups]
        results = await asyncio.gather(*(n.run() for n in nodes))
    finally:
        await network.close()

    assert results[0].counters.rounds_kept_own == 2
    assert results[1].counters.rounds_kept_own == 0


async def test_cancelled_node_says_bye_so_neighbours_stop_waiting() -> None:
    exp = experiment(
        "byzantine.count=0",
        "aggregator.name=mean",
        "aggregator.f=0",
        "run.rounds=6",
        "network.round_timeout=20.0",
    )
    network = Network(exp)
    logs = {i: NodeLog(i) for i in range(exp.n)}
    nodes = [
        Node(NodeSetup.from_experiment(exp, i), network.transports[i], log=logs[i])
        for i in range(exp.n)
    ]
    loop = asyncio.get_running_loop()
    try:
        tasks = [asyncio.create_task(n.run()) for n in nodes]
        while nodes[3].round < 2:  # wait on the event log, not on time
            await asyncio.wait([tasks[3]], timeout=0.05)
        tasks[3].cancel()
        start = loop.time()
        done = await asyncio.gather(*tasks, return_exceptions=True)
        elapsed = loop.time() - start
    finally:
        await network.close()

    assert isinstance(done[3], asyncio.CancelledError)
    assert next(e for e in logs[3].events if e["event"] == "end")["status"] == "stopped"
    survivors = [r for i, r in enumerate(done) if i != 3]
    assert all(isinstance(r, NodeResult) and r.rounds_completed == 6 for r in survivors)
    assert elapsed < 10  # nobody waited the 20 s deadline for node 3


def test_setup_refuses_omniscient_attacks_and_unknown_ids() -> None:
    exp = experiment("byzantine.count=1", "byzantine.knowledge=omniscient")
    with pytest.raises(ConfigError, match="omniscient"):
        NodeSetup.from_experiment(exp, 0)
    honest = experiment("byzantine.count=0")
    with pytest.raises(ConfigError, match=r"--id 6: the topology has nodes 0..5"):
        NodeSetup.from_experiment(honest, 6)


def test_setup_roles_follow_the_attack_kind() -> None:
    mean = ("aggregator.name=mean", "aggregator.f=0", "byzantine.nodes=[2]")
    vector = experiment(*mean, "byzantine.attack=sign_flip")
    data = experiment(*mean, "byzantine.attack=label_flip")
    silent = experiment(*mean, "byzantine.attack=silent")

    roles = [NodeSetup.from_experiment(e, 2).role for e in (vector, data, silent)]

    assert roles == ["vector", "data", "silent"]
    assert NodeSetup.from_experiment(vector, 1).role == "honest"
    assert NodeSetup.from_experiment(vector, 1).honest_neighbours == (0,)


def test_node_refuses_a_transport_of_another_node() -> None:
    exp = experiment("byzantine.count=0")
    net = MemoryNetwork()
    t = MemoryTransport(net, 1, address(1), {0: address(0), 2: address(2)})
    with pytest.raises(ValueError, match="transport is node 1's but the setup is node 0's"):
        Node(NodeSetup.from_experiment(exp, 0), t)
    t2 = MemoryTransport(net, 0, address(0), {1: address(1)})
    with pytest.raises(ValueError, match=r"no address for neighbour\(s\) \[5\]"):
        Node(NodeSetup.from_experiment(exp, 0), t2)


def test_final_vectors_round_trip_through_npy_without_pickle(tmp_path) -> None:  # type: ignore[no-untyped-def]
    v = torch.randn(17)
    np.save(tmp_path / "v.npy", v.numpy(), allow_pickle=False)
    back = np.load(tmp_path / "v.npy", allow_pickle=False)
    assert back.dtype == np.float32
    assert np.array_equal(back, v.numpy())


async def test_checkpoints_every_k_rounds_hold_the_node_state(tmp_path) -> None:  # type: ignore[no-untyped-def]
    exp = experiment(
        "byzantine.count=0",
        "aggregator.name=mean",
        "aggregator.f=0",
        "network.checkpoint_every=2",
        "training.momentum=0.5",
    )
    network = Network(exp)
    try:
        nodes = [
            Node(
                NodeSetup.from_experiment(exp, i),
                network.transports[i],
                checkpoint_dir=str(tmp_path / f"node-{i}"),
            )
            for i in range(exp.n)
        ]
        results = await asyncio.gather(*(n.run() for n in nodes))
    finally:
        await network.close()

    ckpt = load_checkpoint(tmp_path / "node-2", 2, param_count=exp.initial.numel())
    assert ckpt is not None
    assert ckpt.round == 4
    assert torch.equal(ckpt.params, results[2].params)
    assert ckpt.momentum is not None and ckpt.momentum.shape == (exp.initial.numel(),)
    assert len(list((tmp_path / "node-2").glob("*.ckpt"))) == 2  # rounds 2 and 4


def test_setup_refuses_a_rule_that_needs_to_know_the_byzantine_inputs() -> None:
    exp = experiment(
        "byzantine.count=0",
        "aggregator.name=clipped_gossip",
        'aggregator.params={radius = "theorem"}',
    )
    with pytest.raises(ConfigError, match="only the simulator knows"):
        NodeSetup.from_experiment(exp, 0)


async def test_diverging_nodes_are_scored_at_chance_as_in_the_simulator() -> None:
    exp = experiment(
        "byzantine.count=0", "aggregator.name=mean", "aggregator.f=0", "training.lr=1e6"
    )

    results = await run_all(exp)

    assert_parity_of_accuracies(exp, results)
    chance = 1.0 / exp.train.num_classes
    for r in results.values():
        assert r.counters.diverged_round is not None
        assert r.evaluations[-1]["accuracy"] == pytest.approx(chance)


async def test_an_attacker_that_sees_too_little_says_so() -> None:
    # On a ring, a dissensus attacker never sees its targets' other neighbours: with local
    # knowledge it would send each target its own vector. The node warns, as sim does.
    exp = experiment(
        "byzantine.nodes=[3]", "byzantine.attack=dissensus", "aggregator.name=mean", "run.rounds=1"
    )
    network = Network(exp)
    logs = {i: NodeLog(i) for i in range(exp.n)}
    try:
        nodes = [
            Node(NodeSetup.from_experiment(exp, i), network.transports[i], log=logs[i])
            for i in range(exp.n)
        ]
        await asyncio.gather(*(n.run() for n in nodes))
    finally:
        await network.close()

    kinds = {i: [e["kind"] for e in logs[i].events if e["event"] == "warning"] for i in logs}
    assert kinds[3] == ["knowledge"]
    assert all(kinds[i] == [] for i in logs if i != 3)
    assert nodes[3].counters.warnings == {"knowledge": 1}
