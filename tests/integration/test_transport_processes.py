"""ZmqTransport between two real OS processes on 127.0.0.1 (random ports, bounded time)."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from p2pfl import wire
from p2pfl._compat import timeout as async_timeout
from p2pfl.transport import Received, TransportOptions, ZmqTransport, free_tcp_ports

pytestmark = pytest.mark.timeout(120)

PEER_SCRIPT = Path(__file__).with_name("transport_peer.py")
OPTIONS = TransportOptions(send_timeout_s=2.0, reconnect_ivl_ms=20, reconnect_ivl_max_ms=200)


@dataclass
class Pair:
    local: ZmqTransport
    child: asyncio.subprocess.Process


@pytest.fixture
async def pair() -> AsyncIterator[Pair]:
    """Node 0 here, node 1 (transport_peer.py) in a child process; both torn down after."""
    child_address = f"127.0.0.1:{free_tcp_ports(1)[0]}"
    local = ZmqTransport(0, "127.0.0.1:0", {1: child_address}, options=OPTIONS)
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        str(PEER_SCRIPT),
        "--id",
        "1",
        "--bind",
        child_address,
        "--peer",
        f"0={local.endpoint}",
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert child.stdout is not None
        async with async_timeout(60):  # importing torch on a busy machine
            line = await child.stdout.readline()
        assert line.decode().split() == ["ready", f"tcp://{child_address}"]
        yield Pair(local, child)
    finally:
        if child.returncode is None:
            child.kill()
        await child.wait()
        await local.close()


async def exchange(pair: Pair, message: wire.Message) -> tuple[Received, wire.Message]:
    assert await pair.local.send(1, wire.encode(message))
    async with async_timeout(30):
        received = await pair.local.recv()
    return received, wire.decode(received.frames)


async def test_processes_exchange_hello_params_and_bye(pair: Pair) -> None:
    vector = torch.randn(1_000_000, generator=torch.Generator().manual_seed(3))

    r1, hello = await exchange(pair, wire.Hello(0, "0.1.0", "abc", vector.numel(), 0))
    r2, params = await exchange(pair, wire.Params(0, 5, vector))
    r3, bye = await exchange(pair, wire.Bye(0, "done"))
    async with async_timeout(30):
        status = await pair.child.wait()

    assert [r.peer for r in (r1, r2, r3)] == [1, 1, 1]
    assert hello == wire.Hello(1, "seen-peer-0", "abc", 1_000_000, 0)
    assert isinstance(params, wire.Params)
    assert (params.sender, params.round) == (1, 6)
    assert torch.equal(params.vector, 2 * vector)
    assert bye == wire.Bye(1, "bye 0")
    assert status == 0


async def test_send_to_a_killed_process_never_blocks_past_the_timeout(pair: Pair) -> None:
    await exchange(pair, wire.Hello(0, "0.1.0", "abc", 1, 0))  # connected both ways
    pair.child.kill()
    await pair.child.wait()
    outcomes: list[bool] = []
    slowest = 0.0

    for _ in range(50):  # the first few may be queued before the disconnect is noticed
        start = time.monotonic()
        outcomes.append(await pair.local.send(1, [b"anyone?"]))
        slowest = max(slowest, time.monotonic() - start)
        if not outcomes[-1]:
            break

    assert outcomes[-1] is False
    assert pair.local.stats.dropped_by_peer == {1: 1}
    assert slowest < OPTIONS.send_timeout_s + 1.5
