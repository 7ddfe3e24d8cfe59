"""Hostile neighbours at the protocol level, over real sockets: a peer costs a node that peer.

Three ``p2pfl node`` processes on a ring; node 3, a listed neighbour of node 0, is
played by the test with raw pyzmq (its CurveZMQ keys when secured). It sends, at
every phase (start-up, rounds), what a Byzantine neighbour can: a vector of the
wrong length before any hello, garbage, a hello announcing another model (another
parameter count, then another fingerprint), and forged round claims. Node 0 must
complete every round with its honest neighbours, count each offence under the
attacker, refuse it (``refused_peer``), and never skip a round because of it.

Insecure mode: anyone may claim any node id. Forged claims of a round past the run
are refused at the boundary; a forged claim within the run, under an honest
neighbour's id, can make an ``f = 0`` node catch up (a documented limit of running
without keys), and then its skipped rounds are counted as skipped, never as done.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
import zmq
import zmq.asyncio
from _procs import LiveNet, no_leftover_processes, rejection_counts, ring_with_attacker

from p2pfl import wire
from p2pfl._compat import timeout as async_timeout

pytestmark = pytest.mark.timeout(120)

ROUNDS = 12


@pytest.fixture
def run_dir(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path
    assert no_leftover_processes(tmp_path) == []


def garbage() -> list[list[Any]]:
    return [
        [b"\x00 not msgpack"],
        [b"\x81\xa1v\x02", b"x", b"y"],  # three frames, a truncated header
        [wire.encode(wire.Bye(3, "x"))[0], b"payload for a bye"],
    ]


@pytest.mark.parametrize("secure", [True, False], ids=["curve", "insecure"])
async def test_bad_hellos_and_garbage_at_every_phase_cost_the_node_only_that_peer(
    run_dir: Path, secure: bool
) -> None:
    net = LiveNet(
        run_dir,
        ring_with_attacker(3, [0]),
        attacker=3,
        rounds=ROUNDS,
        round_timeout=2.0,
        hello_timeout=20.0,
        secure=secure,
    )
    ctx = zmq.asyncio.Context()
    sent_garbage = 0
    try:
        sink = net.sink(ctx)
        await net.start()
        async with async_timeout(90):
            start = await net.until(0, "start")
            d, fp = int(start["parameters"]), str(start["fingerprint"])
            push = net.attack(ctx, 0)
            # start-up: a wrong-length vector before any hello, garbage, then a hello
            # announcing another parameter count
            await push.send_multipart(wire.encode(wire.Params(3, 1, torch.zeros(d + 1))))
            for frames in garbage():
                await push.send_multipart(frames)
                sent_garbage += 1
            await push.send_multipart(wire.encode(wire.Hello(3, "evil", fp, d + 7, 0)))
            await net.until(0, "round", 2)
            # rounds: another fingerprint, garbage, vectors (refused: it announced another model)
            await push.send_multipart(wire.encode(wire.Hello(3, "evil", "f" * 16, d, 0)))
            for r in (3, 4, 5):
                for frames in garbage():
                    await push.send_multipart(frames)
                    sent_garbage += 1
                await push.send_multipart(wire.encode(wire.Params(3, r, torch.zeros(d))))
                await push.send_multipart(wire.encode(wire.Alive(3, r, True, 60_000)))
            codes = await net.wait()
        sink.close()
    finally:
        await net.close()
        ctx.destroy(linger=0)

    assert codes == {0: 0, 1: 0, 2: 0}
    for k in net.honest:
        assert [e["round"] for e in net.rounds(k)] == list(range(1, ROUNDS + 1)), k
        assert net.end(k)["status"] == "done"
    end = net.end(0)
    accepted, rejected = rejection_counts(end, 3)
    assert accepted == 0
    assert rejected["wrong_length"] == 1
    assert rejected["decode_error"] == sent_garbage
    assert rejected["wrong_model"] >= 2 + 6  # two hellos, then its vectors and heartbeats
    assert end["rounds_skipped"] == 0 and end["rounds_completed"] == ROUNDS
    warnings = [e for e in net.log(0) if e["event"] == "warning"]
    assert [w["peers"] for w in warnings if w["kind"] == "refused_peer"] == [[3]]
    assert all(3 not in e["received"] for e in net.rounds(0))
    # the honest neighbours were never refused or cut
    for peer in (1, 2):
        ok, refused = rejection_counts(end, peer)
        assert ok >= ROUNDS and refused == {}, (peer, ok, refused)
    assert not any(e["waited_out"] for e in net.rounds(0))


async def test_forged_round_claims_cannot_point_past_the_run_and_skips_show(run_dir: Path) -> None:
    # Insecure: the attacker speaks as node 3 and also as node 1 (declared id).
    net = LiveNet(
        run_dir,
        ring_with_attacker(3, [0]),
        attacker=3,
        rounds=ROUNDS,
        round_timeout=2.0,
        hello_timeout=20.0,
    )
    ctx = zmq.asyncio.Context()
    try:
        sink = net.sink(ctx)
        await net.start()
        async with async_timeout(90):
            start = await net.until(0, "start")
            d, fp = int(start["parameters"]), str(start["fingerprint"])
            as_three = net.attack(ctx, 0)
            as_one = ctx.socket(zmq.PUSH)
            as_one.linger = 0
            as_one.setsockopt(zmq.METADATA, b"X-P2PFL-Node:1")
            as_one.connect(f"tcp://{net.addresses[0]}")
            await as_three.send_multipart(wire.encode(wire.Hello(3, "x", fp, d, 0)))
            await as_three.send_multipart(wire.encode(wire.Bye(3, "not waited for")))
            await net.until(0, "round", 2)
            far = wire.MAX_ROUND
            for sock, who in ((as_three, 3), (as_one, 1)):
                await sock.send_multipart(wire.encode(wire.Hello(who, "x", fp, d, far)))
                await sock.send_multipart(wire.encode(wire.Alive(who, far, True, 0)))
                await sock.send_multipart(wire.encode(wire.Alive(who, ROUNDS + 1, True, 0)))
            await net.until(0, "round", 4)
            # within the run, as honest node 1: an f = 0 node follows it (no keys, no proof)
            await as_one.send_multipart(wire.encode(wire.Alive(1, ROUNDS - 1, True, 0)))
            codes = await net.wait()
            as_one.close()
        sink.close()
    finally:
        await net.close()
        ctx.destroy(linger=0)

    assert codes == {0: 0, 1: 0, 2: 0}
    end = net.end(0)
    _, from_three = rejection_counts(end, 3)
    _, from_one = rejection_counts(end, 1)
    assert from_three["future_round"] == 3 and from_one["future_round"] == 3
    rounds = [e["round"] for e in net.rounds(0)]
    assert rounds[-1] == ROUNDS and max(rounds) == ROUNDS  # never past the run
    assert end["last_round"] == ROUNDS
    assert end["rounds_skipped"] > 0
    assert end["rounds_completed"] == ROUNDS - end["rounds_skipped"] == len(rounds)
    warnings = [e for e in net.log(0) if e["event"] == "warning"]
    assert [w["kind"] for w in warnings].count("skipped_rounds") == 1
