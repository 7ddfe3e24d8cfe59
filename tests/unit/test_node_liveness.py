"""Slow is not dead: node 0 of a ring against neighbours the test plays by hand.

Node 0 runs for real on the in-memory transport; its neighbours 1 and 5 are played
by the test with raw protocol messages (hellos, heartbeats, vectors), each behaving
as one failure case of docs/DESIGN.md: slow, silent, dead, behind and waiting,
announcing another model, forging rounds. Timing assertions are one-sided or have
wide margins (a wait is at least the patience; "no wait" is far below it), so they
hold on a loaded machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

import pytest
import torch

from p2pfl import wire
from p2pfl.config import load_scenario
from p2pfl.experiment import build_experiment
from p2pfl.node import Node, NodeLog, NodeResult, NodeSetup
from p2pfl.transport import MemoryNetwork, MemoryTransport, TransportOptions

pytestmark = pytest.mark.timeout(60)

PATIENCE = 1.0  # network.round_timeout: the floor of the patience
BEAT = 0.05  # how often the played neighbours send a heartbeat


class NodeZero:
    """Node 0 of a ring of 6, mean rule unless overridden; neighbours 1 and 5 are played."""

    def __init__(self, rounds: int, *overrides: str) -> None:
        self.exp = build_experiment(
            load_scenario(
                None,
                [
                    "topology.kind=ring",
                    "topology.n=6",
                    "topology.params={}",
                    f"run.rounds={rounds}",
                    f"run.eval_every={rounds}",
                    "model.params.hidden=[16]",
                    "training.local_steps=1",
                    "byzantine.count=0",
                    "aggregator.name=mean",
                    "aggregator.f=0",
                    f"network.round_timeout={PATIENCE}",
                    "network.hello_timeout=2.0",
                    "network.heartbeat_interval=0.05",
                    "network.dead_after=0.5",
                    *overrides,
                ],
            )
        )
        self.net = MemoryNetwork()
        options = TransportOptions(send_timeout_s=0.2)
        self.transports = {
            i: MemoryTransport(
                self.net,
                i,
                f"127.0.0.1:{41000 + i}",
                {j: f"127.0.0.1:{41000 + j}" for j in self.exp.neighbours(i) if j in (0, 1, 5)},
                options=options,
            )
            for i in (0, 1, 5)
        }
        self.setup = NodeSetup.from_experiment(self.exp, 0)
        self.log = NodeLog(0)
        self.node = Node(self.setup, self.transports[0], log=self.log)
        self.rounds_of: dict[int, int] = {1: 0, 5: 0}  # what each played neighbour announces
        self.waits_of: dict[int, int] = {1: 0, 5: 0}  # its announced wait_ms
        self.mute: set[int] = set()  # played neighbours whose heartbeats stopped

    async def send(self, message: wire.Message) -> None:
        """``message`` to node 0, from the neighbour it names as sender."""
        await self.transports[message.sender].send(0, wire.encode(message))

    async def hello(self, peer: int, round_: int = 0, fingerprint: str | None = None) -> None:
        fp = self.setup.fingerprint if fingerprint is None else fingerprint
        await self.send(wire.Hello(peer, "x", fp, self.setup.d, round_))

    async def params(self, peer: int, round_: int, vector: torch.Tensor | None = None) -> None:
        v = self.exp.initial if vector is None else vector
        await self.send(wire.Params(peer, round_, v))

    async def heartbeats(self, peer: int) -> None:
        """Alive every BEAT seconds with the announced round and wait, unless muted."""
        while True:
            if peer not in self.mute:
                alive = wire.Alive(peer, self.rounds_of[peer], True, self.waits_of[peer])
                await self.send(alive)
            await asyncio.sleep(BEAT)

    async def inbound(self, peer: int) -> AsyncIterator[wire.Message]:
        """What node 0 sends ``peer`` (heartbeats left out), until its bye."""
        while True:
            message = wire.decode((await self.transports[peer].recv()).frames)
            if isinstance(message, wire.Bye):
                return
            if not isinstance(message, wire.Alive):
                yield message

    async def vectors_to(self, peer: int) -> AsyncIterator[int]:
        """The round of each vector node 0 sends ``peer``, until its bye."""
        async for message in self.inbound(peer):
            if isinstance(message, wire.Params):
                yield message.round

    async def lockstep(self, peer: int, delay: Callable[[int], float] = lambda r: 0.0) -> None:
        """Say hello; answer each of node 0's vectors with ours for that round, ``delay(r)`` later."""
        await self.hello(peer)
        async for r in self.vectors_to(peer):
            self.rounds_of[peer] = r
            await asyncio.sleep(delay(r))
            await self.params(peer, r)

    async def run(self, *players: Coroutine[Any, Any, None]) -> NodeResult:
        beats = [asyncio.create_task(self.heartbeats(p)) for p in (1, 5)]
        try:
            result, *_ = await asyncio.gather(self.node.run(), *players)
        finally:
            for task in beats:
                task.cancel()
            for task in beats:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            for t in self.transports.values():
                await t.close()
        assert isinstance(result, NodeResult)
        return result

    def rounds(self) -> dict[int, dict[str, Any]]:
        return {e["round"]: e for e in self.log.events if e["event"] == "round"}

    def warnings(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.log.events if e["event"] == "warning" and e["kind"] == kind]


async def test_a_silent_live_neighbour_costs_one_patience_then_is_not_waited_for() -> None:
    # Neighbour 1 is alive (heartbeats, in node 0's round) but never sends a vector.
    zero = NodeZero(5)

    async def silent() -> None:
        await zero.hello(1)
        async for r in zero.vectors_to(1):
            zero.rounds_of[1] = r

    result = await zero.run(silent(), zero.lockstep(5))

    rounds = zero.rounds()
    assert result.counters.rounds_completed == 5
    assert rounds[1]["waited_out"] and rounds[1]["wait_seconds"] >= PATIENCE - 0.05
    assert [rounds[r]["received"] for r in range(1, 6)] == [[5]] * 5
    assert all(rounds[r]["wait_seconds"] < PATIENCE / 2 for r in range(2, 6))  # no more waits
    assert result.counters.rounds_waited_out == 1
    assert [w["peers"] for w in zero.warnings("suspected")] == [[1]]
    assert zero.warnings("dead") == []  # alive: suspected, not dead


async def test_a_neighbour_that_falls_silent_is_dead_within_its_liveness_timeout() -> None:
    # Neighbour 1 is in step for two rounds, then stops everything (killed, no bye).
    zero = NodeZero(5, "network.round_timeout=10.0")

    async def dies_after_round_2() -> None:
        await zero.hello(1)
        async for r in zero.vectors_to(1):
            zero.rounds_of[1] = r
            if r <= 2:
                await zero.params(1, r)
            else:
                zero.mute.add(1)

    result = await zero.run(dies_after_round_2(), zero.lockstep(5))

    rounds = zero.rounds()
    assert result.counters.rounds_completed == 5
    assert rounds[3]["received"] == [5] and rounds[3]["dead"] == [1]
    # dead after 0.5 s of silence (plus a heartbeat or two), far below the 10 s patience
    assert 0.3 <= rounds[3]["wait_seconds"] < 5.0
    assert not rounds[3]["waited_out"] and zero.warnings("suspected") == []
    assert all(rounds[r]["wait_seconds"] < 1.0 for r in (4, 5))
    assert [w["peers"] for w in zero.warnings("dead")] == [[1]]


@pytest.mark.parametrize(("wait_ms", "waited_for"), [(3000, True), (0, False)])
async def test_a_neighbour_behind_that_says_it_waits_for_its_own_neighbours_is_waited_for(
    wait_ms: int, waited_for: bool
) -> None:
    # In node 0's round 3, neighbour 1 is still in round 2, waiting (it says) up to 3 s for
    # its own neighbours; it moves on 2 s later (twice the patience) and sends round 3.
    zero = NodeZero(4)

    async def behind() -> None:
        await zero.hello(1)
        async for r in zero.vectors_to(1):
            if r == 3:
                zero.rounds_of[1], zero.waits_of[1] = 2, wait_ms
                await asyncio.sleep(2 * PATIENCE)
                zero.waits_of[1] = 0
            zero.rounds_of[1] = r
            await zero.params(1, r)

    result = await zero.run(behind(), zero.lockstep(5))

    third = zero.rounds()[3]
    assert result.counters.rounds_completed == 4
    if waited_for:
        assert third["received"] == [1, 5] and not third["waited_out"]
        assert third["wait_seconds"] >= 2 * PATIENCE - 0.1
        assert zero.warnings("suspected") == []
    else:
        assert third["received"] == [5] and third["waited_out"]
        assert [w["peers"] for w in zero.warnings("suspected")] == [[1]]


async def test_the_patience_grows_with_the_lateness_it_observes() -> None:
    # Neighbour 1 is always 0.4 s late; from round 6 on, 1.6 s late: beyond the 1 s floor,
    # within five times what was seen. It is never cut.
    zero = NodeZero(8)

    result = await zero.run(
        zero.lockstep(1, delay=lambda r: 0.4 if r < 6 else 1.6), zero.lockstep(5)
    )

    rounds = zero.rounds()
    assert result.counters.rounds_waited_out == 0
    assert all(rounds[r]["received"] == [1, 5] for r in range(1, 9))
    assert rounds[1]["patience"] == pytest.approx(PATIENCE, abs=0.01)
    assert rounds[5]["patience"] >= 1.5  # about 5 x 0.4 s: grown well past the floor
    assert rounds[7]["wait_seconds"] >= 1.5


async def test_a_suspected_neighbour_is_waited_for_when_the_rule_needs_it() -> None:
    # Trimmed mean with f = 1 needs 3 vectors: both neighbours. Neighbour 1 is silent until
    # round 4, then in step. Node 0 waits a patience for it every round (never racing on
    # alone), keeps its own vector while it cannot aggregate, aggregates again from round 4.
    zero = NodeZero(5, "aggregator.name=trimmed_mean", "aggregator.f=1")

    async def late_joiner() -> None:
        await zero.hello(1)
        async for r in zero.vectors_to(1):
            zero.rounds_of[1] = r
            if r >= 4:
                await zero.params(1, r)

    result = await zero.run(late_joiner(), zero.lockstep(5))

    rounds = zero.rounds()
    assert [rounds[r]["kept_own"] for r in range(1, 6)] == [True, True, True, False, False]
    assert all(rounds[r]["wait_seconds"] >= PATIENCE - 0.05 for r in (1, 2, 3))
    assert rounds[4]["received"] == [1, 5]
    assert result.counters.rounds_kept_own == 3
    assert len(zero.warnings("kept_own")) == 3


async def test_a_neighbour_announcing_another_model_is_refused_and_the_node_runs_on() -> None:
    zero = NodeZero(3)

    async def other_model() -> None:
        await zero.hello(1, fingerprint="f" * 16)
        async for r in zero.vectors_to(1):
            await zero.params(1, r)  # refused too: it announced another model

    result = await zero.run(other_model(), zero.lockstep(5))

    assert result.counters.rounds_completed == 3
    assert all(e["received"] == [5] for e in zero.rounds().values())
    rejected = zero.node.counters.rejections.of(1)
    assert rejected.get("wrong_model", 0) >= 2  # its hello, and whatever it sent after
    assert [w["peers"] for w in zero.warnings("refused_peer")] == [[1]]
    hello = next(e for e in zero.log.events if e["event"] == "hello")
    assert hello["refused"] == [1] and hello["heard"] == [5]


async def test_garbage_before_a_hello_is_counted_and_costs_nothing() -> None:
    zero = NodeZero(3)

    async def garbage_first() -> None:
        await zero.transports[1].send(0, [b"\x00 not msgpack"])
        await zero.params(1, 1, torch.zeros(zero.setup.d + 1))  # wrong length, before hello
        await zero.lockstep(1)

    result = await zero.run(garbage_first(), zero.lockstep(5))

    assert result.counters.rounds_completed == 3
    assert all(e["received"] == [1, 5] for e in zero.rounds().values())
    assert zero.node.counters.rejections.of(1) == {"decode_error": 1, "wrong_length": 1}
    assert zero.warnings("refused_peer") == []


async def test_round_claims_past_the_run_are_refused_and_skips_are_never_counted_done() -> None:
    # Both neighbours claim (hello and heartbeat) round 2**63 - 1: refused, nothing skipped.
    # Then neighbour 5 announces round 28 of 30: node 0 (f = 0) catches up there, and its
    # counters say so: 28 - 4 rounds skipped, not completed.
    zero = NodeZero(30)
    forged = wire.MAX_ROUND

    async def forger(peer: int) -> None:
        await zero.hello(peer)
        async for r in zero.vectors_to(peer):
            if r == 2:
                await zero.hello(peer, forged)
                await zero.send(wire.Alive(peer, forged, True, 0))
            if peer == 5 and r == 4:
                zero.rounds_of[5] = 28
                await zero.hello(5, 28)
            elif r < 28:
                zero.rounds_of[peer] = r
            await zero.params(peer, r)

    result = await zero.run(forger(1), forger(5))

    c = result.counters
    assert zero.node.counters.rejections.of(1)["future_round"] >= 2
    assert c.last_round == 30
    assert c.rounds_skipped == 24  # rounds 5..28
    assert c.rounds_completed == 30 - 24
    assert c.rounds_trained + 1 == c.rounds_completed  # the catch-up round adopts, not trains
    assert [w["kind"] for w in zero.log.events if w["event"] == "warning"].count(
        "skipped_rounds"
    ) == 1


async def test_a_lost_hello_is_said_again_when_the_neighbour_asks() -> None:
    zero = NodeZero(3)
    hellos: list[int] = []

    async def never_got_the_hello() -> None:
        await zero.hello(1)
        await zero.send(wire.Alive(1, 0, False, 0))  # "I do not have your hello"
        async for message in zero.inbound(1):
            if isinstance(message, wire.Hello):
                hellos.append(message.sender)
            elif isinstance(message, wire.Params):
                await asyncio.sleep(0.1)  # a run of several heartbeat intervals
                await zero.params(1, message.round)

    await zero.run(never_got_the_hello(), zero.lockstep(5))

    assert hellos == [0, 0]  # the first, and once more when asked


@pytest.mark.parametrize(("late_round", "waited_for"), [(3, True), (2, False)])
async def test_a_suspected_neighbour_that_delivers_again_is_waited_for_again(
    late_round: int, waited_for: bool
) -> None:
    # Neighbour 1 is silent (suspected) until node 0's round 5; then it sends a vector of
    # ``late_round`` and, 0.5 s later, its round-5 vector. Within the two rounds the inbox
    # keeps (3), that proves it alive and delivering: node 0 waits for it again. Older (2),
    # the vector is refused at the boundary and proves nothing: not waited for.
    zero = NodeZero(6)

    async def comes_back() -> None:
        await zero.hello(1)
        async for r in zero.vectors_to(1):
            zero.rounds_of[1] = r
            if r == 5:
                await zero.params(1, late_round)
                await asyncio.sleep(0.5)
                await zero.params(1, 5)

    result = await zero.run(comes_back(), zero.lockstep(5))

    fifth = zero.rounds()[5]
    assert result.counters.rounds_completed == 6
    if waited_for:
        assert fifth["received"] == [1, 5]
        assert result.counters.inbox_dropped == {"stale": 1}
    else:
        assert fifth["received"] == [5]
        assert zero.node.counters.rejections.of(1) == {"stale_round": 1}


@pytest.mark.parametrize(("announced", "catches_up"), [(8, False), (9, True)])
async def test_a_node_catches_up_only_past_the_rounds_its_inbox_buffers(
    announced: int, catches_up: bool
) -> None:
    # During node 0's round 5, neighbour 1 announces round ``announced``. At the start
    # of round 6, round 8 is within the inbox's window (6 + 2): the neighbours' vectors
    # of rounds 6-8 are buffered, ordinary rounds follow them. Round 9 is past it: node 0
    # jumps there with a catch-up round.
    zero = NodeZero(9)

    async def neighbour(peer: int) -> None:
        await zero.hello(peer)
        async for r in zero.vectors_to(peer):
            zero.rounds_of[peer] = max(zero.rounds_of[peer], r)
            await zero.params(peer, r)
            if peer == 1 and r == 5:
                zero.rounds_of[1] = announced
                await zero.send(wire.Alive(1, announced, True, 0))

    result = await zero.run(neighbour(1), neighbour(5))

    c = result.counters
    rounds = sorted(zero.rounds())
    jumps = [(e["from_round"], e["round"]) for e in zero.log.events if e["event"] == "catch_up"]
    assert c.last_round == 9
    if catches_up:
        assert jumps == [(6, 9)]
        assert rounds == [1, 2, 3, 4, 5, 9]
        assert (c.rounds_skipped, c.rounds_completed, c.rounds_trained) == (3, 6, 5)
    else:
        assert jumps == []
        assert rounds == list(range(1, 10))
        assert (c.rounds_skipped, c.rounds_completed, c.rounds_trained) == (0, 9, 9)


async def test_a_neighbour_announcing_endless_waits_costs_a_bounded_time_once() -> None:
    # Neighbour 1 claims, every heartbeat, to be a round behind and still waiting 60 s for
    # its own neighbours, and never delivers. Node 0 credits at most hello_timeout + 2P of
    # it (2 + 2 s here), then P more: one wait of at most 5 s, then never again.
    zero = NodeZero(4)

    async def stalling() -> None:
        await zero.hello(1)
        async for r in zero.vectors_to(1):
            zero.rounds_of[1], zero.waits_of[1] = max(0, r - 1), 60_000

    result = await zero.run(stalling(), zero.lockstep(5))

    rounds = zero.rounds()
    assert result.counters.rounds_completed == 4
    assert 2 * PATIENCE <= rounds[1]["wait_seconds"] <= 5.0 + 0.5
    assert rounds[1]["waited_out"]
    assert all(rounds[r]["wait_seconds"] < PATIENCE for r in (2, 3, 4))
    assert [w["peers"] for w in zero.warnings("suspected")] == [[1]]


async def _messages_to_1_in_lockstep(zero: NodeZero) -> list[wire.Message]:
    """Run node 0 with both neighbours in step, saying bye after its own; every message
    node 0 sent neighbour 1, in order."""
    seen: list[wire.Message] = []

    async def in_step(peer: int) -> None:
        await zero.hello(peer)
        while True:
            message = wire.decode((await zero.transports[peer].recv()).frames)
            if isinstance(message, wire.Bye):
                await zero.send(wire.Bye(peer, "done"))
                return
            if peer == 1:
                seen.append(message)
            if isinstance(message, wire.Params):
                zero.rounds_of[peer] = message.round
                await zero.params(peer, message.round)

    result = await zero.run(in_step(1), in_step(5))
    assert result.counters.rounds_completed == zero.setup.rounds
    return seen


async def test_a_round_whose_vector_goes_out_at_once_costs_no_heartbeat(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The vector tells the neighbour which round node 0 is in. With the deferred entry
    # heartbeat 5 s away and periodic ones 30 s apart, none carries a round: the first
    # (at start-up) says round 0, and every round's first message is its vector.
    monkeypatch.setattr("p2pfl.node.node.ROUND_BEAT_DELAY_S", 5.0)
    zero = NodeZero(
        6,
        "network.heartbeat_interval=30.0",
        "network.dead_after=60.0",
        "network.round_timeout=60.0",
    )

    seen = await _messages_to_1_in_lockstep(zero)

    assert [m.round for m in seen if isinstance(m, wire.Alive)] == [0]
    assert [m.round for m in seen if isinstance(m, wire.Params)] == [1, 2, 3, 4, 5, 6]


async def test_a_node_slow_to_train_says_it_entered_the_round_before_its_vector(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Round 3's training takes 1 s: neighbour 1 hears "in round 3" from a heartbeat about
    # ROUND_BEAT_DELAY_S after node 0 entered it, long before the vector.
    zero = NodeZero(
        4,
        "network.heartbeat_interval=30.0",
        "network.dead_after=60.0",
        "network.round_timeout=60.0",
    )
    train = zero.node._train

    def slow_round_3(r: int) -> Any:
        if r == 3:
            time.sleep(1.0)
        return train(r)

    monkeypatch.setattr(zero.node, "_train", slow_round_3)

    seen = await _messages_to_1_in_lockstep(zero)

    rounds = [(type(m).__name__, m.round) for m in seen if not isinstance(m, wire.Hello)]
    assert rounds == [
        ("Alive", 0),
        ("Params", 1),
        ("Params", 2),
        ("Alive", 3),
        ("Params", 3),
        ("Params", 4),
    ]


async def test_a_wait_announced_in_an_earlier_round_ends_when_the_neighbour_moves_on() -> None:
    # Neighbour 1 says in round 1 that it waits 8 s for its own neighbours, then sends its
    # round-1 and round-2 vectors (it moved on) and freezes: no heartbeat, nothing more.
    # In round 3 node 0 waits for it one patience, not what the old announcement said.
    zero = NodeZero(3, "network.dead_after=30.0", "network.hello_timeout=10.0")

    async def announces_then_freezes() -> None:
        await zero.hello(1)
        async for r in zero.vectors_to(1):
            zero.rounds_of[1] = r
            if r == 1:
                zero.waits_of[1] = 8000
                await asyncio.sleep(4 * BEAT)  # its heartbeats say so
                zero.mute.add(1)
            if r <= 2:
                await zero.params(1, r)

    result = await zero.run(announces_then_freezes(), zero.lockstep(5))

    third = zero.rounds()[3]
    assert result.counters.rounds_completed == 3
    assert third["received"] == [5] and third["waited_out"]
    assert PATIENCE - 0.05 <= third["wait_seconds"] < 5.0  # crediting the 8 s: about 9 s
