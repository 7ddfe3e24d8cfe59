"""The connection guard's accounting and the model-derived inbound limit.

What the guard measures (kernel counters of a real loopback TCP connection) and
how it budgets them (pure arithmetic); the guard against live ZeroMQ connections
is tested in ``tests/integration/test_transport_memory.py``.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from p2pfl.errors import ConfigError
from p2pfl.transport import inbound_frame_limit
from p2pfl.transport.guard import (
    COMMAND_BYTES_PER_BEAT,
    CURVE_SERVER_HANDSHAKE_BYTES,
    FRAME_OVERHEAD_BYTES,
    SLACK_BYTES,
    UNAUTHENTICATED_BYTES,
    GuardBudget,
    Ledger,
    TcpCounters,
    guard_supported,
    tcp_counters,
)
from p2pfl.wire import MAX_HEADER_BYTES

pytestmark = pytest.mark.timeout(30)

MESSAGE = inbound_frame_limit(4 * 2410)  # a 2,410-parameter model
BUDGET = GuardBudget(message_bytes=MESSAGE, hwm=4, heartbeat_ivl_ms=1000)


# ----------------------------------------------------------------------------- inbound limit


def test_inbound_limit_is_the_payload_plus_a_header_plus_a_small_allowance() -> None:
    limit = inbound_frame_limit(4 * 2410)

    assert limit == 4 * 2410 + MAX_HEADER_BYTES + 4096
    assert inbound_frame_limit(0) == MAX_HEADER_BYTES + 4096
    # a vector a byte too long (the "oversized" refusal) still fits in a frame
    assert limit >= 4 * 2410 + MAX_HEADER_BYTES + 1


def test_inbound_limit_under_the_operator_cap_and_above_it() -> None:
    assert inbound_frame_limit(1000, cap_bytes=2**20) == 1000 + MAX_HEADER_BYTES + 4096
    with pytest.raises(ConfigError, match=r"network\.max_message_mb: .* above the cap of 1048576"):
        inbound_frame_limit(2**20, cap_bytes=2**20, cap_name="network.max_message_mb")


@pytest.mark.parametrize("bad", [-1, 2.5, True, "4"])
def test_inbound_limit_rejects_a_bad_payload_budget(bad: object) -> None:
    with pytest.raises(ValueError, match="payload_bytes must be a non-negative int"):
        inbound_frame_limit(bad)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- budget


def test_limit_is_hwm_plus_two_messages_plus_slack() -> None:
    assert BUDGET.limit == 6 * MESSAGE + SLACK_BYTES


def test_a_backed_up_honest_connection_is_within_budget() -> None:
    # Prepare: 100 messages delivered, then hwm complete ones queued in the pipe plus one
    # frame in libzmq's decoder and one message the application took but has not counted.
    ledger = Ledger(opened=0.0)
    for _ in range(100):
        ledger.deliver(MESSAGE, 2)
    framing = FRAME_OVERHEAD_BYTES * 2 * (100 + 6)
    read = 100 * MESSAGE + (4 + 2) * MESSAGE + framing + 600  # + handshake
    # Execute
    excess = BUDGET.excess(ledger, TcpCounters(read=read, acked=92), now=0.0)
    # Assert
    assert excess < 0
    assert BUDGET.held(ledger, TcpCounters(read=read, acked=92), now=0.0) <= BUDGET.limit


def test_an_unfinished_message_over_the_limit_is_cut_whatever_came_before() -> None:
    ledger = Ledger(opened=0.0)
    ledger.deliver(10 * MESSAGE, 20)  # honest traffic first: it earns no credit
    delivered = 10 * MESSAGE + FRAME_OVERHEAD_BYTES * 20
    at_limit = delivered + BUDGET.limit + COMMAND_BYTES_PER_BEAT

    assert BUDGET.excess(ledger, TcpCounters(at_limit, 92), now=0.0) == 0
    assert BUDGET.excess(ledger, TcpCounters(at_limit + 1, 92), now=0.0) == 1


def test_heartbeats_libzmq_consumes_are_allowed_for_as_long_as_a_connection_lives() -> None:
    ledger = Ledger(opened=100.0)
    day = 86_400.0
    pings_and_pongs = int(day) * 2 * 42  # one each per second, CurveZMQ-sized

    counters = TcpCounters(read=BUDGET.limit + pings_and_pongs, acked=92)

    assert BUDGET.excess(ledger, counters, now=100.0 + day) < 0
    assert BUDGET.excess(ledger, counters, now=100.0) > 0  # the same bytes at once are not


def test_curve_connection_is_unauthenticated_until_the_server_sent_ready() -> None:
    curve = GuardBudget(message_bytes=MESSAGE, hwm=4, heartbeat_ivl_ms=1000, curve=True)
    ledger = Ledger(opened=0.0)
    greeting_and_welcome = 64 + 170
    error_reply = greeting_and_welcome + 12

    for acked in (0, 64, greeting_and_welcome, error_reply):
        counters = TcpCounters(read=UNAUTHENTICATED_BYTES + 1, acked=acked)
        assert not curve.authenticated(counters)
        assert curve.excess(ledger, counters, now=0.0) == 1
    ready = TcpCounters(read=UNAUTHENTICATED_BYTES + 1, acked=CURVE_SERVER_HANDSHAKE_BYTES)
    assert curve.authenticated(ready)
    assert curve.excess(ledger, ready, now=0.0) < 0
    # without CurveZMQ there is no unauthenticated phase to tell apart
    assert BUDGET.authenticated(TcpCounters(read=10**6, acked=0))


# ----------------------------------------------------------------------------- kernel counters


@pytest.fixture
def tcp_pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    listener = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(listener.getsockname())
    server, _ = listener.accept()
    listener.close()
    try:
        yield client, server
    finally:
        client.close()
        server.close()


def recv_exactly(sock: socket.socket, n: int) -> bytes:
    chunks = b""
    while len(chunks) < n:
        chunks += sock.recv(n - len(chunks))
    return chunks


@pytest.mark.skipif(not guard_supported(), reason="TCP_INFO counters are Linux-only")
def test_tcp_counters_count_what_the_application_read_not_what_waits_in_the_kernel(
    tcp_pair: tuple[socket.socket, socket.socket],
) -> None:
    client, server = tcp_pair
    client.sendall(b"x" * 1000)
    server.sendall(b"y" * 300)
    recv_exactly(client, 300)
    client.sendall(b"z")  # carries the acknowledgement of the 300 bytes

    recv_exactly(server, 600)
    counters = tcp_counters(server)
    assert counters is not None
    assert counters.read == 600  # what is still queued in the kernel is not counted
    recv_exactly(server, 401)  # the "z" is read: its acknowledgement was processed before
    assert tcp_counters(server) == TcpCounters(read=1001, acked=300)


@pytest.mark.skipif(not guard_supported(), reason="TCP_INFO counters are Linux-only")
def test_tcp_counters_of_a_unix_socket_are_unavailable() -> None:
    a, b = socket.socketpair()
    try:
        assert tcp_counters(a) is None
    finally:
        a.close()
        b.close()
