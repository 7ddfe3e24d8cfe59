"""Hostile listed neighbours over real sockets.

- Colliding identities: a listed neighbour that opens many connections announcing
  arbitrary and duplicate identities (routing ids of libzmq's reserved form, the
  ones a ROUTER would assign next, and PUSHes declaring other nodes' ids) cannot
  crash a live node (libzmq 4.3.5 aborted a ROUTER on such a collision): the node
  keeps serving its honest neighbours and finishes every round.
- A live ``p2pfl node`` process (secured and not) refuses NaN, Inf, wrong-length,
  stale-round, oversized and impersonating messages from a listed neighbour and
  counts each under its reason, attributed to that neighbour.
"""

from __future__ import annotations

import contextlib
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

pytestmark = pytest.mark.timeout(60)

D = 4


def params(sender: int, round_: int = 1, value: float = 1.0, d: int = D) -> list[Any]:
    return wire.encode(wire.Params(sender, round_, torch.full((d,), value)))


@pytest.fixture
def run_dir(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path
    assert no_leftover_processes(tmp_path) == []


#: The routing ids libzmq 4.3.5 assigns a ROUTER's anonymous connections: a zero byte,
#: then a counter that starts at the C library's first ``rand()`` (0x6B8B4567 in glibc).
RESERVED_IDS = [b"\0" + (0x6B8B4567 + i).to_bytes(4, "big") for i in range(8)]


@pytest.mark.parametrize("secure", [True, False], ids=["curve", "insecure"])
async def test_colliding_identities_from_a_neighbour_cannot_crash_a_live_node(
    run_dir: Path, secure: bool
) -> None:
    rounds = 20
    net = LiveNet(
        run_dir,
        ring_with_attacker(3, [0]),
        attacker=3,
        rounds=rounds,
        round_timeout=2.0,
        secure=secure,
    )
    ctx = zmq.asyncio.Context()
    try:
        sink = net.sink(ctx)
        await net.start()
        async with async_timeout(50):
            start = await net.until(0, "start")
            d = int(start["parameters"])
            push = net.attack(ctx, 0)
            hello = wire.Hello(3, "colliding", str(start["fingerprint"]), d, 0)
            await push.send_multipart(wire.encode(hello))
            await push.send_multipart(wire.encode(wire.Bye(3, "not waited for")))
            await net.until(0, "round", 1)
            sockets = []
            # Announce the ids a ROUTER would assign next, then connect anonymously so
            # that it would assign them: the abort of the old ROUTER-based transport.
            for rid in [*RESERVED_IDS, *RESERVED_IDS]:
                dealer = net.attack(ctx, 0, zmq.DEALER)
                dealer.setsockopt(zmq.ROUTING_ID, rid)
                sockets.append(dealer)
            sockets += [net.attack(ctx, 0, zmq.DEALER) for _ in range(8)]
            # Several connections declaring the same ids (an honest neighbour's among them).
            for claimed in (1, 1, 2, 3, 3):
                liar = ctx.socket(zmq.PUSH)
                liar.linger = 0
                liar.setsockopt(zmq.METADATA, b"X-P2PFL-Node:%d" % claimed)
                liar.connect(f"tcp://{net.addresses[0]}")
                sockets.append(liar)
            for sock in sockets:
                # DEALERs are refused at the handshake (PULL takes PUSH only): their sends
                # queue or, once the refused connection is gone, find no pipe at all (a
                # blocking send would then wait forever). Stale rounds: nothing here can
                # be aggregated.
                with contextlib.suppress(zmq.Again):
                    await sock.send_multipart(params(3, 0, 1.0, d), flags=zmq.NOBLOCK, copy=True)
            await net.until(0, "round", 3)
            for sock in sockets:
                sock.close()
            codes = await net.wait()
        sink.close()
    finally:
        await net.close()
        ctx.destroy(linger=0)

    assert codes == {0: 0, 1: 0, 2: 0}
    for k in net.honest:
        assert [e["round"] for e in net.rounds(k)] == list(range(1, rounds + 1)), k
        assert net.end(k)["status"] == "done"
    accepted, _ = rejection_counts(net.end(0), 3)
    assert accepted >= 2  # the Hello and the Bye


HOSTILE = {
    "nan": ("non_finite", lambda d, r: params(3, r, float("nan"), d)),
    "inf": ("non_finite", lambda d, r: params(3, r, float("inf"), d)),
    "wrong_length": ("wrong_length", lambda d, r: params(3, r, 1.0, d + 1)),
    "stale_round": ("stale_round", lambda d, r: params(3, 0, 1.0, d)),
    "impersonation": ("impersonation", lambda d, r: params(1, r, 1.0, d)),
    "oversized": (
        "oversized",
        lambda d, r: [
            bytes(wire.encode(wire.Bye(3, "x"))[0]),
            b"\0" * (4 * d + wire.MAX_HEADER_BYTES),
        ],
    ),
}


async def test_a_live_node_rejects_and_counts_each_hostile_kind(run_dir: Path) -> None:
    rounds = 200
    net = LiveNet(run_dir, ring_with_attacker(3, [0]), attacker=3, rounds=rounds, round_timeout=2.0)
    ctx = zmq.asyncio.Context()
    per_kind = 5
    try:
        sink = net.sink(ctx)
        await net.start()
        async with async_timeout(50):
            start = await net.until(0, "start")
            d = int(start["parameters"])
            dealer = net.attack(ctx, 0)
            hello = wire.Hello(3, "hostile", str(start["fingerprint"]), d, 0)
            await dealer.send_multipart(wire.encode(hello))
            await dealer.send_multipart(wire.encode(wire.Bye(3, "not waited for")))
            await net.until(0, "round", 2)
            for _, make in HOSTILE.values():
                for _ in range(per_kind):
                    r = 1 + max(e["round"] for e in net.events[0] if e["event"] == "round")
                    await dealer.send_multipart(make(d, r + 1))
            codes = await net.wait()
        sink.close()
    finally:
        await net.close()
        ctx.destroy(linger=0)

    assert codes == {0: 0, 1: 0, 2: 0}
    accepted, rejected = rejection_counts(net.end(0), 3)
    assert accepted == 2  # Hello and Bye
    expected: dict[str, int] = {}
    for reason, _ in HOSTILE.values():
        expected[reason] = expected.get(reason, 0) + per_kind
    assert rejected == expected
    assert [e["round"] for e in net.rounds(0)] == list(range(1, rounds + 1))
