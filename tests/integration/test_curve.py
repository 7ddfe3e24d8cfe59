"""CurveZMQ over real sockets: who gets in, and whom a message is attributed to.

A secured ROUTER (node 0) bound on 127.0.0.1 with an allow-list of nodes 1 and 2.
Waits are futures with deadlines (monitor events, ``poll`` with a timeout), never
sleep loops; every socket and context is closed with ``linger=0``.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
import zmq
import zmq.asyncio
from zmq.utils.monitor import parse_monitor_message

from p2pfl import wire
from p2pfl._compat import timeout as async_timeout
from p2pfl.errors import RejectedMessage
from p2pfl.security import (
    KeyPair,
    SecurityContext,
    check_claimed_sender,
    generate_keys,
    load_node_keys,
)
from p2pfl.transport.base import SocketRole, TransportOptions
from p2pfl.transport.zeromq import ZmqTransport
from p2pfl.validation import Expectations, RejectionCounters, screen

pytestmark = pytest.mark.timeout(60)

D = 4
WAIT_S = 20.0  # deadline for something that must happen (ms when idle; margin for load)
SPAWN_S = 120.0  # deadline for something a freshly spawned interpreter must do
QUIET_S = 0.3  # how long "nothing arrives" is watched after the handshake was refused


def pair() -> KeyPair:
    return KeyPair(*zmq.curve_keypair())


def params_frames(sender: int, round: int = 0) -> list[Any]:
    return wire.encode(wire.Params(sender=sender, round=round, vector=torch.ones(D)))


@dataclass
class Server:
    security: SecurityContext
    router: zmq.asyncio.Socket
    monitor: zmq.asyncio.Socket
    endpoint: str


class Sockets:
    """Records every context and socket a test opens; closes them all with linger=0."""

    def __init__(self) -> None:
        self.sockets: list[zmq.Socket[Any]] = []
        self.contexts: list[zmq.Context[Any]] = []
        self.hooks: list[Any] = []

    def context(self) -> zmq.asyncio.Context:
        ctx = zmq.asyncio.Context()
        self.contexts.append(ctx)
        return ctx

    def socket(self, ctx: zmq.asyncio.Context, kind: int) -> zmq.asyncio.Socket:
        sock = ctx.socket(kind)
        sock.linger = 0
        self.sockets.append(sock)
        return sock

    def monitor(self, sock: zmq.asyncio.Socket) -> zmq.asyncio.Socket:
        mon = sock.get_monitor_socket()
        self.sockets.append(mon)
        return mon

    def close(self) -> None:
        for hook in self.hooks:  # ZAP handlers first: their sockets live in the contexts
            hook.close()
        for sock in reversed(self.sockets):
            sock.close(linger=0)
        for ctx in self.contexts:
            ctx.destroy(linger=0)  # term() would block forever on a socket a failed test left open


@pytest.fixture
async def zmq_sockets() -> AsyncIterator[Sockets]:
    s = Sockets()
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def keys() -> dict[str, KeyPair]:
    return {"server": pair(), "one": pair(), "two": pair(), "outsider": pair()}


def secured_server(s: Sockets, keys: dict[str, KeyPair]) -> Server:
    security = SecurityContext.from_keys(
        0, keys["server"], {1: keys["one"].public, 2: keys["two"].public}
    )
    hook = security.socket_hook()
    s.hooks.append(hook)
    ctx = s.context()
    router = s.socket(ctx, zmq.ROUTER)
    hook(router, SocketRole.INCOMING, None)
    monitor = s.monitor(router)
    router.bind("tcp://127.0.0.1:0")
    return Server(security, router, monitor, str(router.getsockopt_string(zmq.LAST_ENDPOINT)))


def client(
    s: Sockets, node: int, own: KeyPair, server_public: bytes, endpoint: str
) -> zmq.asyncio.Socket:
    dealer = s.socket(s.context(), zmq.DEALER)
    SecurityContext.from_keys(node, own, {0: server_public}).configure_client(dealer, 0)
    dealer.connect(endpoint)
    return dealer


async def next_event(monitor: zmq.asyncio.Socket, wanted: set[int], within: float = WAIT_S) -> Any:
    async with async_timeout(within):
        while True:
            event = parse_monitor_message(await monitor.recv_multipart())
            if event["event"] in wanted:
                return event


async def recv(router: zmq.asyncio.Socket) -> list[zmq.Frame]:
    async with async_timeout(WAIT_S):
        parts = await router.recv_multipart(copy=False)
    return list(parts[1:])  # drop the ROUTER's routing-id frame, as the transport does


def expectations() -> Expectations:
    return Expectations(node_id=0, neighbours=frozenset({1, 2}), param_count=D)


# ----------------------------------------------------------------------------- in process


async def test_listed_client_gets_through_and_is_identified(
    zmq_sockets: Sockets, keys: dict[str, KeyPair]
) -> None:
    # Prepare
    server = secured_server(zmq_sockets, keys)
    dealer = client(zmq_sockets, 1, keys["one"], keys["server"].public, server.endpoint)
    # Execute
    await dealer.send_multipart(params_frames(sender=1), copy=False)
    frames = await recv(server.router)
    # Assert
    assert frames[0].get("User-Id") == "1"
    assert server.security.peer_of(frames[0]) == 1
    assert server.security.sender_of(None, frames) == 1
    counters = RejectionCounters()
    message = screen(
        frames, server.security.sender_of(None, frames), expectations(), set(), counters
    )
    assert isinstance(message, wire.Params) and message.sender == 1
    assert counters.as_dict()["by_peer"]["1"]["accepted"] == 1


async def test_unlisted_key_gets_zero_messages_accepted(
    zmq_sockets: Sockets, keys: dict[str, KeyPair]
) -> None:
    # Prepare: an outsider that even knows the server's public key
    server = secured_server(zmq_sockets, keys)
    outsider = client(zmq_sockets, 9, keys["outsider"], keys["server"].public, server.endpoint)
    # Execute
    for r in range(20):
        await outsider.send_multipart(params_frames(sender=1, round=r), copy=False)
    refused = await next_event(server.monitor, {zmq.EVENT_HANDSHAKE_FAILED_AUTH})
    # Assert: refused by ZAP (status 400), nothing delivered ...
    assert refused["value"] == 400
    assert await server.router.poll(timeout=int(QUIET_S * 1000)) == 0
    # ... while the same router still serves a listed client.
    listed = client(zmq_sockets, 2, keys["two"], keys["server"].public, server.endpoint)
    await listed.send_multipart(params_frames(sender=2), copy=False)
    frames = await recv(server.router)
    assert server.security.peer_of(frames[0]) == 2
    assert await server.router.poll(timeout=int(QUIET_S * 1000)) == 0


async def test_plaintext_client_gets_nothing_through(
    zmq_sockets: Sockets, keys: dict[str, KeyPair]
) -> None:
    server = secured_server(zmq_sockets, keys)
    plain = zmq_sockets.socket(zmq_sockets.context(), zmq.DEALER)  # NULL mechanism
    plain.connect(server.endpoint)
    await plain.send_multipart(params_frames(sender=1), copy=False)
    await next_event(server.monitor, {zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL})
    assert await server.router.poll(timeout=int(QUIET_S * 1000)) == 0


async def test_listed_key_of_a_non_neighbour_is_refused(
    zmq_sockets: Sockets, keys: dict[str, KeyPair]
) -> None:
    # Node 3 is in the topology but not a neighbour of 0: not on 0's allow-list.
    server = secured_server(zmq_sockets, keys)
    three = client(zmq_sockets, 3, pair(), keys["server"].public, server.endpoint)
    await three.send_multipart(params_frames(sender=3), copy=False)
    await next_event(server.monitor, {zmq.EVENT_HANDSHAKE_FAILED_AUTH})
    assert await server.router.poll(timeout=int(QUIET_S * 1000)) == 0


async def test_wrong_server_key_fails_on_the_client_side(
    zmq_sockets: Sockets, keys: dict[str, KeyPair]
) -> None:
    server = secured_server(zmq_sockets, keys)
    ctx = zmq_sockets.context()
    dealer = zmq_sockets.socket(ctx, zmq.DEALER)
    # Node 1 connects believing the server is someone else: the handshake cannot finish.
    SecurityContext.from_keys(1, keys["one"], {0: pair().public}).configure_client(dealer, 0)
    monitor = zmq_sockets.monitor(dealer)
    dealer.connect(server.endpoint)
    await dealer.send_multipart(params_frames(sender=1), copy=False)
    await next_event(
        monitor,
        {
            zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL,
            zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL,
            zmq.EVENT_DISCONNECTED,
        },
    )
    assert await server.router.poll(timeout=int(QUIET_S * 1000)) == 0


async def test_listed_client_claiming_another_id_is_rejected(
    zmq_sockets: Sockets, keys: dict[str, KeyPair]
) -> None:
    # Prepare: node 2 holds its own listed key but writes sender=1 in the header
    server = secured_server(zmq_sockets, keys)
    liar = client(zmq_sockets, 2, keys["two"], keys["server"].public, server.endpoint)
    liar.routing_id = b"n1"  # and even announces node 1's routing id
    # Execute
    await liar.send_multipart(params_frames(sender=1), copy=False)
    frames = await recv(server.router)
    authenticated = server.security.sender_of(1, frames)
    # Assert
    assert authenticated == 2
    with pytest.raises(RejectedMessage, match="impersonation") as info:
        check_claimed_sender(1, authenticated)
    assert info.value.reason == "impersonation"
    counters = RejectionCounters()
    assert screen(frames, authenticated, expectations(), set(), counters) is None
    assert counters.of(2) == {"impersonation": 1}


async def test_server_without_zap_handler_is_refused_and_fails_closed(
    zmq_sockets: Sockets, keys: dict[str, KeyPair]
) -> None:
    security = SecurityContext.from_keys(0, keys["server"], {1: keys["one"].public})
    ctx = zmq_sockets.context()
    router = zmq_sockets.socket(ctx, zmq.ROUTER)
    with pytest.raises(RuntimeError, match="no ZAP handler"):
        security.configure_server(router)
    # With a handler configured, then stopped: the server refuses everyone, even listed keys.
    hook = security.socket_hook()
    hook(router, SocketRole.INCOMING, None)
    hook.close()
    monitor = zmq_sockets.monitor(router)
    router.bind("tcp://127.0.0.1:0")
    dealer = client(
        zmq_sockets,
        1,
        keys["one"],
        keys["server"].public,
        str(router.getsockopt_string(zmq.LAST_ENDPOINT)),
    )
    await dealer.send_multipart(params_frames(sender=1), copy=False)
    await next_event(
        monitor, {zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL, zmq.EVENT_HANDSHAKE_FAILED_AUTH}
    )
    assert await router.poll(timeout=int(QUIET_S * 1000)) == 0


async def test_transport_hook_secures_zmq_transport(keys: dict[str, KeyPair]) -> None:
    # The two nodes as p2pfl's transport builds them, secured through configure_socket.
    sec0 = SecurityContext.from_keys(0, keys["server"], {1: keys["one"].public})
    sec1 = SecurityContext.from_keys(1, keys["one"], {0: keys["server"].public})
    hook0, hook1 = sec0.socket_hook(), sec1.socket_hook()
    t0 = ZmqTransport(0, "127.0.0.1:0", {}, options=TransportOptions(configure_socket=hook0))
    try:
        t1 = ZmqTransport(
            1, "127.0.0.1:0", {0: t0.endpoint}, options=TransportOptions(configure_socket=hook1)
        )
        try:
            assert await t1.send(0, params_frames(sender=1))
            async with async_timeout(WAIT_S):
                received = await t0.recv()
            assert received.peer == 1
            assert sec0.sender_of(received.peer, received.frames) == 1
        finally:
            hook1.close()  # before the transport terminates its context
            await t1.close()
    finally:
        hook0.close()
        await t0.close()


# ----------------------------------------------------------------------------- two processes

CLIENT = r"""
import sys
import torch, zmq
from p2pfl import wire
from p2pfl.security import SecurityContext, load_node_keys
key_dir, node, server_public, endpoint, claimed = sys.argv[1:6]
ctx = zmq.Context()
sock = ctx.socket(zmq.DEALER)
sock.linger = 0
security = SecurityContext.from_keys(int(node), load_node_keys(key_dir, int(node)), {0: server_public})
security.configure_client(sock, 0)
sock.connect(endpoint)
sock.send_multipart(wire.encode(wire.Params(sender=int(claimed), round=0, vector=torch.ones(4))))
# Stay connected until the server acknowledges (or give up after 10 s): no sleeping.
print("acked" if sock.poll(10_000) else "no-ack", flush=True)
sock.close(0)
ctx.term()
"""


@pytest.fixture
def key_dir(tmp_path: Path) -> Path:
    generate_keys(tmp_path, [0, 1, 9])
    return tmp_path


def spawn_client(
    key_dir: Path, node: int, server_public: bytes, endpoint: str
) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    return subprocess.Popen(
        [
            sys.executable,
            "-c",
            CLIENT,
            str(key_dir),
            str(node),
            server_public.decode(),
            endpoint,
            str(node),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for p in started:
        if p.poll() is None:
            p.kill()
        p.communicate(timeout=WAIT_S)


async def test_separate_process_client_listed_and_unlisted(
    zmq_sockets: Sockets, key_dir: Path, processes: list[subprocess.Popen[str]]
) -> None:
    # Prepare: keys from files, node 1 listed, node 9 (also with a key file) not
    own = load_node_keys(key_dir, 0)
    security = SecurityContext.from_keys(0, own, {1: load_node_keys(key_dir, 1).public})
    hook = security.socket_hook()
    zmq_sockets.hooks.append(hook)
    ctx = zmq_sockets.context()
    router = zmq_sockets.socket(ctx, zmq.ROUTER)
    hook(router, SocketRole.INCOMING, None)
    monitor = zmq_sockets.monitor(router)
    router.bind("tcp://127.0.0.1:0")
    endpoint = str(router.getsockopt_string(zmq.LAST_ENDPOINT))
    # Execute: the unlisted process first; it must be refused
    processes.append(spawn_client(key_dir, 9, own.public, endpoint))
    # a child interpreter importing p2pfl: tens of seconds on a loaded machine
    await next_event(monitor, {zmq.EVENT_HANDSHAKE_FAILED_AUTH}, within=SPAWN_S)
    processes[0].kill()
    # then the listed one
    processes.append(spawn_client(key_dir, 1, own.public, endpoint))
    async with async_timeout(SPAWN_S):  # includes the child's interpreter and torch start-up
        parts = await router.recv_multipart(copy=False)
    await router.send_multipart([parts[0], b"ack"])
    out, err = await asyncio.to_thread(processes[1].communicate, timeout=SPAWN_S)
    # Assert
    assert security.peer_of(parts[1]) == 1
    message = wire.decode(parts[1:])
    assert message.sender == 1
    assert out.strip() == "acked", err
    assert await router.poll(timeout=int(QUIET_S * 1000)) == 0  # nothing from node 9, ever
