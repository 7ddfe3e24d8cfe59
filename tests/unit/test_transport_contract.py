"""The transport contract, run against ZmqTransport (real sockets on 127.0.0.1) and MemoryTransport."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

import pytest
import torch
import zmq
import zmq.asyncio

import p2pfl.transport as transport_pkg
from p2pfl import wire
from p2pfl._compat import timeout as async_timeout
from p2pfl.errors import ConfigError
from p2pfl.transport import (
    MemoryNetwork,
    MemoryTransport,
    SocketRole,
    Transport,
    TransportClosed,
    TransportError,
    TransportOptions,
    UnknownPeerError,
    ZmqTransport,
    free_tcp_ports,
    normalize_address,
)
from p2pfl.transport.zeromq import NODE_PROPERTY, node_metadata, peer_of_property

pytestmark = pytest.mark.timeout(60)

FAST = TransportOptions(send_timeout_s=2.0, reconnect_ivl_ms=20, reconnect_ivl_max_ms=200)
SLACK_S = 1.5  # generous: CI machines are shared


class Cluster:
    """Makes transports of one kind; closes every one of them at teardown."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.network = MemoryNetwork()
        self.made: list[Transport] = []
        self._next = 20000

    def addresses(self, n: int) -> list[str]:
        if self.kind == "zmq":
            return [f"127.0.0.1:{p}" for p in free_tcp_ports(n)]
        self._next += n
        return [f"127.0.0.1:{self._next - n + i}" for i in range(n)]

    def unbound_address(self) -> str:
        return self.addresses(1)[0]  # zmq: a port nobody listens on; memory: never bound

    def transport(
        self,
        node_id: int,
        bind: str,
        peers: Mapping[int, str],
        options: TransportOptions = FAST,
    ) -> Transport:
        t: Transport
        if self.kind == "zmq":
            t = ZmqTransport(node_id, bind, peers, options=options)
        else:
            t = MemoryTransport(self.network, node_id, bind, peers, options=options)
        self.made.append(t)
        return t

    def mesh(self, n: int, options: TransportOptions = FAST) -> list[Transport]:
        addresses = self.addresses(n)
        return [
            self.transport(
                i, addresses[i], {j: a for j, a in enumerate(addresses) if j != i}, options
            )
            for i in range(n)
        ]

    async def close(self) -> None:
        for t in self.made:
            await t.close()


@pytest.fixture(params=["zmq", "memory"])
async def cluster(request: pytest.FixtureRequest) -> AsyncIterator[Cluster]:
    c = Cluster(request.param)
    try:
        yield c
    finally:
        await c.close()


def as_bytes(frame: wire.Frame) -> bytes:
    return frame.bytes if isinstance(frame, zmq.Frame) else bytes(frame)


async def recv_within(t: Transport, seconds: float = 10.0) -> transport_pkg.Received:
    async with async_timeout(seconds):
        return await t.recv()


async def nothing_arrives(t: Transport, seconds: float) -> bool:
    try:
        async with async_timeout(seconds):
            await t.recv()
    except TimeoutError:
        return True
    return False


# ----------------------------------------------------------------------------- delivery


async def test_three_peers_all_to_all_report_connection_identity(cluster: Cluster) -> None:
    nodes = cluster.mesh(3)

    results = await asyncio.gather(
        *(n.send(j, wire.encode(wire.Bye(n.node_id, f"to {j}"))) for n in nodes for j in n.peers)
    )
    got = {}
    for n in nodes:
        got[n.node_id] = [await recv_within(n) for _ in range(2)]

    assert all(results)
    for node_id, received in got.items():
        decoded = {(r.peer, wire.decode(r.frames)) for r in received}
        assert decoded == {(p, wire.Bye(p, f"to {node_id}")) for p in range(3) if p != node_id}
    assert [n.stats.sent for n in nodes] == [2, 2, 2]
    assert [n.stats.received for n in nodes] == [2, 2, 2]


async def test_order_is_kept_per_sender(cluster: Cluster) -> None:
    a, b, c = cluster.mesh(3)
    count = 40

    async def send_all(t: Transport) -> list[bool]:
        return [await t.send(2, [b"%d" % k]) for k in range(count)]

    async def receive_all() -> list[tuple[int | None, int]]:
        out = []
        for _ in range(2 * count):
            r = await recv_within(c)
            out.append((r.peer, int(as_bytes(r.frames[0]))))
        return out

    sent_a, sent_b, received = await asyncio.gather(send_all(a), send_all(b), receive_all())

    assert all(sent_a) and all(sent_b)
    assert [k for p, k in received if p == 0] == list(range(count))
    assert [k for p, k in received if p == 1] == list(range(count))


async def test_params_cross_intact_and_private(cluster: Cluster) -> None:
    a, b = cluster.mesh(2)
    vector = torch.randn(100_000, generator=torch.Generator().manual_seed(0))
    original = vector.clone()

    assert await a.send(1, wire.encode(wire.Params(0, 3, vector)))
    r = await recv_within(b)
    message = wire.decode(r.frames)
    assert isinstance(message, wire.Params)
    message.vector.mul_(2)  # the receiver's copy is its own

    assert r.peer == 0
    assert torch.equal(vector, original)
    assert torch.equal(message.vector, 2 * original)


async def test_bind_to_port_zero_reports_endpoint(cluster: Cluster) -> None:
    server = cluster.transport(0, "127.0.0.1:0", {})
    client = cluster.transport(1, cluster.unbound_address(), {0: server.endpoint})

    assert server.endpoint.startswith("tcp://127.0.0.1:")
    assert not server.endpoint.endswith(":0")
    assert await client.send(0, [b"hi"])
    r = await recv_within(server)
    assert (r.peer, as_bytes(r.frames[0])) == (1, b"hi")


async def test_bind_to_an_address_in_use_fails(cluster: Cluster) -> None:
    first = cluster.transport(0, "127.0.0.1:0", {})

    with pytest.raises(TransportError, match="cannot bind"):
        cluster.transport(1, first.endpoint, {})


# ----------------------------------------------------------------------------- lifecycle


async def test_close_is_idempotent_and_async_with_closes(cluster: Cluster) -> None:
    (t,) = cluster.mesh(1)

    async with t:
        assert not t.closed
    await t.close()

    assert t.closed


async def test_send_and_recv_after_close_raise(cluster: Cluster) -> None:
    a, _ = cluster.mesh(2)
    await a.close()

    with pytest.raises(TransportClosed):
        await a.recv()
    with pytest.raises(TransportClosed):
        await a.send(1, [b"x"])


async def test_pending_recv_ends_with_transport_closed(cluster: Cluster) -> None:
    a, _ = cluster.mesh(2)
    pending = asyncio.create_task(a.recv())
    await asyncio.sleep(0)  # let it start waiting

    await a.close()

    with pytest.raises(TransportClosed):
        await pending


async def test_pending_send_ends_with_transport_closed(cluster: Cluster) -> None:
    options = TransportOptions(send_timeout_s=30.0)
    a = cluster.transport(0, cluster.unbound_address(), {1: cluster.unbound_address()}, options)
    pending = asyncio.create_task(a.send(1, [b"x"]))
    await asyncio.sleep(0)

    start = time.monotonic()
    await a.close()

    with pytest.raises(TransportClosed):
        await pending
    assert time.monotonic() - start < SLACK_S


async def test_cancelling_a_recv_is_a_plain_cancellation(cluster: Cluster) -> None:
    a, b = cluster.mesh(2)
    pending = asyncio.create_task(a.recv())
    await asyncio.sleep(0)

    pending.cancel()

    with pytest.raises(asyncio.CancelledError):
        await pending
    assert await b.send(0, [b"still works"])
    assert (await recv_within(a)).peer == 1


async def test_send_to_unknown_peer_raises(cluster: Cluster) -> None:
    a, _ = cluster.mesh(2)

    with pytest.raises(UnknownPeerError, match=r"unknown peer 7; this node's neighbours are: 1"):
        await a.send(7, [b"x"])
    with pytest.raises(UnknownPeerError, match="unknown peer True"):
        await a.send(True, [b"x"])


async def test_send_of_no_or_non_bytes_frames_raises(cluster: Cluster) -> None:
    a, _ = cluster.mesh(2)

    with pytest.raises(ValueError, match="at least one frame"):
        await a.send(1, [])
    with pytest.raises(ValueError, match="frame 1 is a str; frames are bytes"):
        await a.send(1, [b"ok", "text"])  # type: ignore[list-item]


# ----------------------------------------------------------------------------- bounded waits


async def test_send_to_unreachable_peer_drops_within_timeout(cluster: Cluster) -> None:
    options = TransportOptions(send_timeout_s=0.2)
    a = cluster.transport(0, cluster.unbound_address(), {1: cluster.unbound_address()}, options)

    start = time.monotonic()
    queued = await a.send(1, [b"hello?"])
    elapsed = time.monotonic() - start

    assert queued is False
    assert 0.15 <= elapsed < 0.2 + SLACK_S
    assert a.stats.dropped == 1
    assert a.stats.dropped_by_peer == {1: 1}


async def test_full_queue_drops_are_counted_and_bounded(cluster: Cluster) -> None:
    options = TransportOptions(hwm=1, send_timeout_s=0.1)
    a, _ = cluster.mesh(2, options)  # the receiver never reads
    chunk = bytes(2**20)
    outcomes: list[bool] = []
    slowest = 0.0

    for _ in range(96):  # ZeroMQ: HWMs plus a few MB of kernel socket buffers
        start = time.monotonic()
        outcomes.append(await a.send(1, [chunk]))
        slowest = max(slowest, time.monotonic() - start)
        if outcomes.count(False) >= 3:
            break

    assert outcomes.count(False) == 3
    assert a.stats.dropped == 3
    assert a.stats.sent == outcomes.count(True)
    assert slowest < 0.1 + SLACK_S


async def test_messages_queued_just_before_close_still_arrive(cluster: Cluster) -> None:
    # A goodbye is the last thing a stopping node sends: close must not drop it.
    a, b = cluster.mesh(2)
    chunk = bytes(2**20)  # a few of these take the I/O thread a while to write out
    for i in range(4):
        assert await a.send(1, [i.to_bytes(1, "big"), chunk])
    await a.close()

    got = [as_bytes((await recv_within(b)).frames[0]) for _ in range(4)]

    assert got == [bytes([0]), bytes([1]), bytes([2]), bytes([3])]


async def test_close_waits_at_most_the_linger_for_a_peer_that_never_reads(cluster: Cluster) -> None:
    # A peer that never reads costs a closing node at most the linger.
    options = TransportOptions(hwm=1, send_timeout_s=0.1, close_linger_ms=200)
    a, _ = cluster.mesh(2, options)  # the receiver never reads
    while await a.send(1, [bytes(2**20)]):
        pass
    start = time.monotonic()
    await a.close()
    assert time.monotonic() - start < 0.2 + SLACK_S


async def test_oversized_frame_is_not_delivered(cluster: Cluster) -> None:
    options = TransportOptions(max_message_bytes=1000, send_timeout_s=2.0)
    a, b, c = cluster.mesh(3, options)

    await a.send(2, [bytes(5000)])
    await b.send(2, [b"small"])
    r = await recv_within(c)

    assert (r.peer, as_bytes(r.frames[0])) == (1, b"small")
    assert await nothing_arrives(c, 0.3)


# ----------------------------------------------------------------------------- construction


@pytest.mark.parametrize(
    ("node_id", "peers", "match"),
    [
        (-1, {}, "node_id must be an int"),
        (True, {}, "node_id must be an int"),
        (0, {0: "127.0.0.1:1"}, "lists itself"),
        (0, {"1": "127.0.0.1:1"}, "a peer id must be an int"),
        (0, {1: "nowhere"}, "is not host:port"),
        (0, [1, 2], "peers must be a mapping"),
    ],
)
async def test_bad_ids_and_addresses_are_config_errors(
    cluster: Cluster, node_id: Any, peers: Any, match: str
) -> None:
    with pytest.raises(ConfigError, match=match):
        cluster.transport(node_id, "127.0.0.1:0", peers)


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("hwm", 0, "hwm must be a positive int"),
        ("hwm", True, "hwm must be a positive int"),
        ("max_message_bytes", 2.5, "max_message_bytes must be a positive int"),
        ("max_message_bytes", 2**63, "at most 2\\*\\*62"),
        ("heartbeat_ivl_ms", -5, "heartbeat_ivl_ms must be a positive int"),
        ("heartbeat_timeout_ms", 10, "must be at least heartbeat_ivl_ms"),
        ("reconnect_ivl_max_ms", 50, "must be at least reconnect_ivl_ms"),
        ("send_timeout_s", 0, "send_timeout_s must be a positive number"),
        ("send_timeout_s", float("inf"), "send_timeout_s must be a positive number"),
        ("send_timeout_s", "1", "send_timeout_s must be a positive number"),
        ("close_linger_ms", -1, "close_linger_ms must be a non-negative int"),
        ("close_linger_ms", 0.5, "close_linger_ms must be a non-negative int"),
        ("handshake_ivl_ms", 0, "handshake_ivl_ms must be a positive int"),
        ("handshake_ivl_ms", 2.5, "handshake_ivl_ms must be a positive int"),
        ("guard_interval_ms", -1, "guard_interval_ms must be an int in \\[0, 1000\\]"),
        ("guard_interval_ms", 1001, "guard_interval_ms must be an int in \\[0, 1000\\]"),
        ("guard_interval_ms", True, "guard_interval_ms must be an int in \\[0, 1000\\]"),
        ("configure_socket", 3, "configure_socket must be callable"),
    ],
)
def test_transport_options_are_validated(field: str, value: Any, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        TransportOptions(**{field: value})


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("127.0.0.1:5000", "tcp://127.0.0.1:5000"),
        ("node-3.local:80", "tcp://node-3.local:80"),
        ("[::1]:5000", "tcp://[::1]:5000"),
        ("tcp://*:0", "tcp://*:0"),
        ("ipc:///tmp/p2pfl.sock", "ipc:///tmp/p2pfl.sock"),
    ],
)
def test_normalize_address(address: str, expected: str) -> None:
    assert normalize_address(address) == expected


@pytest.mark.parametrize(
    "address", ["localhost", "host:99999", "udp://h:1", "tcp://", "inproc://x"]
)
def test_normalize_address_rejects(address: str) -> None:
    with pytest.raises(ConfigError, match="address"):
        normalize_address(address)


def test_free_tcp_ports_are_distinct_and_validated() -> None:
    ports = free_tcp_ports(5)

    assert len(set(ports)) == 5
    assert all(0 < p < 65536 for p in ports)
    with pytest.raises(ValueError, match="k must be a non-negative int"):
        free_tcp_ports(-1)


def test_public_api_is_exactly_all() -> None:
    public = {name for name in vars(transport_pkg) if not name.startswith("_")}
    modules = {"base", "guard", "limits", "memory", "ports", "zeromq"}

    assert public - modules == set(transport_pkg.__all__)


# ----------------------------------------------------------------------------- ZeroMQ only


def test_node_metadata_round_trips_and_foreign_values_are_rejected() -> None:
    name, _, value = node_metadata(12).partition(b":")

    assert name.decode() == NODE_PROPERTY
    assert peer_of_property(value.decode()) == 12
    assert peer_of_property(node_metadata(0).partition(b":")[2].decode()) == 0
    for foreign in ("", "n1", "01", "-1", "1 ", "\x00k", "99999999999", "2147483648", None, 7):
        assert peer_of_property(foreign) is None


@pytest.mark.parametrize(
    "metadata",
    [None, b"X-P2PFL-Node:evil", b"X-P2PFL-Node:\xff\xfe", b"X-Other:1"],
    ids=["none", "not-an-id", "not-utf8", "other-property"],
)
async def test_zmq_reports_no_identity_for_foreign_connections(metadata: bytes | None) -> None:
    ctx = zmq.asyncio.Context()
    async with ZmqTransport(0, "127.0.0.1:0", {}, options=FAST) as t:
        raw = ctx.socket(zmq.PUSH)
        raw.linger = 0
        if metadata is not None:
            raw.setsockopt(zmq.METADATA, metadata)
        raw.connect(t.endpoint)
        try:
            await raw.send_multipart([b"junk"])
            r = await recv_within(t)
        finally:
            raw.close()
    ctx.term()

    assert r.peer is None
    assert as_bytes(r.frames[0]) == b"junk"


async def test_zmq_takes_the_declared_node_id_of_a_raw_push() -> None:
    ctx = zmq.asyncio.Context()
    async with ZmqTransport(0, "127.0.0.1:0", {}, options=FAST) as t:
        raw = ctx.socket(zmq.PUSH)
        raw.linger = 0
        raw.setsockopt(zmq.METADATA, node_metadata(5))
        raw.connect(t.endpoint)
        try:
            await raw.send_multipart([b"hi", b"there"])
            r = await recv_within(t)
        finally:
            raw.close()
    ctx.term()

    assert r.peer == 5
    assert [as_bytes(f) for f in r.frames] == [b"hi", b"there"]


async def test_zmq_socket_hook_sees_every_socket_before_use() -> None:
    calls: list[tuple[int, SocketRole, int | None, int]] = []

    def hook(sock: zmq.Socket[Any], role: SocketRole, peer: int | None) -> None:
        calls.append((int(sock.type), role, peer, int(sock.getsockopt(zmq.LINGER))))

    options = TransportOptions(configure_socket=hook)
    async with ZmqTransport(
        0, "127.0.0.1:0", {2: "127.0.0.1:1", 1: "127.0.0.1:2"}, options=options
    ):
        pass

    assert calls == [
        (zmq.PULL, SocketRole.INCOMING, None, 0),
        (zmq.PUSH, SocketRole.OUTGOING, 1, 0),
        (zmq.PUSH, SocketRole.OUTGOING, 2, 0),
    ]


async def test_zmq_close_also_closes_sockets_a_hook_opened_in_its_context() -> None:
    opened: list[zmq.Socket[Any]] = []

    def hook(sock: zmq.Socket[Any], role: SocketRole, peer: int | None) -> None:
        if role is SocketRole.INCOMING:  # as a ZAP handler would
            extra = sock.context.socket(zmq.PAIR)
            extra.bind("inproc://handler")
            opened.append(extra)

    t = ZmqTransport(0, "127.0.0.1:0", {}, options=TransportOptions(configure_socket=hook))
    async with async_timeout(10):  # Context.term would wait for `extra` forever
        await t.close()

    assert len(opened) == 1
    assert opened[0].closed


def test_zmq_socket_hook_errors_propagate() -> None:
    def hook(sock: zmq.Socket[Any], role: SocketRole, peer: int | None) -> None:
        raise RuntimeError("no keys for this peer")

    with pytest.raises(RuntimeError, match="no keys"):
        ZmqTransport(0, "127.0.0.1:0", {}, options=TransportOptions(configure_socket=hook))


# ----------------------------------------------------------------------------- memory only


async def test_memory_receiver_serves_senders_round_robin() -> None:
    net = MemoryNetwork()
    options = TransportOptions(hwm=8)
    c = MemoryTransport(net, 2, "127.0.0.1:0", {}, options=options)
    a = MemoryTransport(net, 0, "127.0.0.1:0", {2: c.endpoint}, options=options)
    b = MemoryTransport(net, 1, "127.0.0.1:0", {2: c.endpoint}, options=options)
    for _ in range(5):
        await a.send(2, [b"a"])
    await b.send(2, [b"b"])

    order = [(await c.recv()).peer for _ in range(6)]
    for t in (a, b, c):
        await t.close()

    assert order == [0, 1, 0, 0, 0, 0]


def test_memory_transport_needs_a_network() -> None:
    with pytest.raises(TypeError, match="network must be a MemoryNetwork"):
        MemoryTransport(None, 0, "127.0.0.1:0", {})  # type: ignore[arg-type]
