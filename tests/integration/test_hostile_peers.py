"""Hostile listed neighbours over real sockets.

- Routing-id squatting: a neighbour that connects first announcing another node's
  routing id ``n<j>`` can neither keep node ``j`` out nor be taken for it
  (secured: identity is the key's ZAP User-Id; insecure: ``ROUTER_HANDOVER``).
- A live ``p2pfl node`` process (secured and not) refuses NaN, Inf, wrong-length,
  stale-round, oversized and impersonating messages from a listed neighbour and
  counts each under its reason, attributed to that neighbour.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
import zmq
import zmq.asyncio
from _procs import LiveNet, no_leftover_processes, rejection_counts, ring_with_attacker

from p2pfl import wire
from p2pfl.security import KeyPair, SecurityContext
from p2pfl.transport import Received, TransportOptions, ZmqTransport
from p2pfl.validation import Expectations, RejectionCounters, screen

pytestmark = pytest.mark.timeout(60)

D = 4
WAIT_S = 10.0
FAST = TransportOptions(send_timeout_s=5.0, reconnect_ivl_ms=20, reconnect_ivl_max_ms=100)


def pair() -> KeyPair:
    return KeyPair(*zmq.curve_keypair())


def params(sender: int, round_: int = 1, value: float = 1.0, d: int = D) -> list[Any]:
    return wire.encode(wire.Params(sender, round_, torch.full((d,), value)))


async def squatter(
    ctx: zmq.asyncio.Context, endpoint: str, keys: KeyPair | None, server: bytes | None
) -> zmq.asyncio.Socket:
    """A DEALER announcing node 1's routing id (with node 2's key when secured)."""
    sock = ctx.socket(zmq.DEALER)
    sock.linger = 0
    sock.routing_id = b"n1"
    if keys is not None:
        assert server is not None
        sock.curve_serverkey = server
        sock.curve_publickey = keys.public
        sock.curve_secretkey = keys.secret
    sock.connect(endpoint)
    return sock


async def recv(t: ZmqTransport) -> Received:
    async with asyncio.timeout(WAIT_S):
        return await t.recv()


@pytest.mark.parametrize("secure", [True, False], ids=["curve", "insecure"])
async def test_a_neighbour_squatting_another_routing_id_cannot_block_or_impersonate_it(
    secure: bool,
) -> None:
    keys = {k: pair() for k in (0, 1, 2)}

    def security(k: int, allowed: list[int]) -> SecurityContext:
        if not secure:
            return SecurityContext.insecure()
        return SecurityContext.from_keys(k, keys[k], {j: keys[j].public for j in allowed})

    s0, s1 = security(0, [1, 2]), security(1, [0])
    ctx = zmq.asyncio.Context()
    with s0.socket_hook() as hook0, s1.socket_hook() as hook1:
        opts0 = TransportOptions(configure_socket=hook0, send_timeout_s=5.0)
        async with ZmqTransport(0, "127.0.0.1:0", {}, options=opts0) as node0:
            try:
                liar = await squatter(
                    ctx, node0.endpoint, keys[2] if secure else None, keys[0].public
                )
                await liar.send_multipart(params(1, value=-1.0))  # claims to be node 1
                first = await recv(node0)  # the squatter is connected before node 1
                opts1 = TransportOptions(
                    configure_socket=hook1,
                    send_timeout_s=5.0,
                    reconnect_ivl_ms=20,
                    reconnect_ivl_max_ms=100,
                )
                async with ZmqTransport(1, "127.0.0.1:0", {0: node0.endpoint}, options=opts1) as n1:
                    assert await n1.send(0, params(1, value=7.0))
                    second = await recv(node0)
                    await liar.send_multipart(params(1, round_=2, value=-1.0))
                    third = await recv(node0) if secure else None
            finally:
                ctx.destroy(linger=0)

    expect = Expectations(node_id=0, neighbours=frozenset({1, 2}), param_count=D, round=1)
    counters = RejectionCounters()
    sender_of = s0.sender_of
    if secure:
        # The squatter is known by its key: node 2, whatever routing id it announced.
        assert first.peer == 2
        assert (
            screen(first.frames, sender_of(first.peer, first.frames), expect, set(), counters)
            is None
        )
        assert counters.of(2) == {"impersonation": 1}
        assert third is not None and third.peer == 2
    # Node 1 got through, and was recognised as node 1.
    assert second.peer == 1
    message = screen(second.frames, sender_of(second.peer, second.frames), expect, set(), counters)
    assert isinstance(message, wire.Params) and float(message.vector[0]) == 7.0


@pytest.fixture
def run_dir(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path
    assert no_leftover_processes(tmp_path) == []


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
        async with asyncio.timeout(50):
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
