"""Bounded memory per incoming connection, whatever a peer sends.

Why a guard
    libzmq bounds an incoming connection in whole messages (``RCVHWM``) and single
    frames (``MAXMSGSIZE``), never in bytes. The frames of a message still arriving
    sit in the connection's pipe, invisible to the application and not counted by
    RCVHWM; a peer that sends frames with "more" set and never the last one grows
    the receiver without bound (measured, libzmq 4.3.5: 192 MiB of 64 KiB frames,
    +188 MiB RSS; closing the connection freed all of it). No option, socket type
    (the single-frame CLIENT/SERVER are draft-only in libzmq 4.3.5) or monitor event
    bounds it. So the guard measures what libzmq holds for each connection and
    closes a connection that holds more than a legitimate one can.

What it measures (Linux, TCP)
    The PULL's monitor reports each accepted connection's file descriptor
    (``EVENT_ACCEPTED``); the guard duplicates it (the duplicate stays the same
    socket even when libzmq closes and reuses the number) and, every
    ``interval_s``, reads from the kernel::

        read = tcpi_bytes_received (TCP_INFO) - bytes still queued (SIOCINQ)

    the bytes libzmq has taken from that connection. Every message the application
    receives names its connection (``zmq.SRCFD``): ``delivered`` sums their frames.
    What libzmq holds for the connection is then at most::

        held = read - delivered - framing of delivered frames - ZMTP commands

    Bytes still in the kernel are not counted (a merely backed-up neighbour is
    not libzmq's problem: TCP flow control stops it). ZMTP commands libzmq
    consumes itself (heartbeat PING/PONG) get an allowance per heartbeat interval.
    Above :attr:`GuardBudget.limit` (``hwm + 2`` largest messages plus slack, more
    than an honest neighbour can make it hold: ``hwm`` messages in the pipe, one
    frame in the decoder, one message the application has taken but not yet
    counted) the guard shuts the connection down (``shutdown(2)``); libzmq then
    drops its pipe and the unfinished message with it, the peer sees the
    connection close and may reconnect. Only while libzmq reads from it: a
    connection whose pipe is full holds complete messages the application will
    take, and libzmq 4.3.5 aborts the process when such a connection hangs up and
    a heartbeat is then due (``docs/security.md``, "What is not protected").

Before authentication (CurveZMQ)
    A CurveZMQ server sends exactly its greeting (64 bytes) and WELCOME (170) until
    ZAP has accepted the client's key; then READY (at least 32 bytes). So while
    TCP_INFO's ``tcpi_bytes_acked`` is below :data:`CURVE_SERVER_HANDSHAKE_BYTES`
    the client is not authenticated, and it may make libzmq hold at most
    :data:`UNAUTHENTICATED_BYTES` (an honest client's greeting, HELLO and INITIATE
    are about 600 bytes). An honest client sends no message before it has READY,
    and its first message carries the TCP acknowledgement of READY, so this never
    cuts an authenticated connection.

Where it cannot measure
    Not on Linux (no ``TCP_INFO`` of this layout), and for ``ipc://`` connections,
    :func:`tcp_counters` returns ``None`` and the connection is not guarded:
    memory per connection is then bounded only by MAXMSGSIZE per frame and
    RCVHWM per complete message, not for an unfinished message.

Threads and locking
    The guard runs in its own thread: libzmq's I/O thread keeps reading while the
    event loop is busy, and a loopback peer streams hundreds of MB/s, so the check
    cannot wait for the loop. The application thread reports deliveries through
    :meth:`ConnectionGuard.delivered`, which first drains the monitor (the
    connection of any message it is handed was accepted, and reported, before the
    message existed) and counts under the lock the guard's checks hold: a check
    never sees a message taken but not counted, beyond the one being counted.
"""

from __future__ import annotations

import array
import contextlib
import fcntl
import os
import select
import socket
import struct
import sys
import termios
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, cast

import zmq

__all__ = [
    "COMMAND_BYTES_PER_BEAT",
    "CURVE_SERVER_HANDSHAKE_BYTES",
    "FRAME_OVERHEAD_BYTES",
    "SLACK_BYTES",
    "UNAUTHENTICATED_BYTES",
    "ConnectionGuard",
    "GuardBudget",
    "Ledger",
    "TcpCounters",
    "guard_supported",
    "tcp_counters",
]

#: Per delivered frame: ZMTP frame header (<= 9 bytes) plus CurveZMQ MESSAGE wrapping
#: (command name 8, nonce 8, MAC 16, flags 1).
FRAME_OVERHEAD_BYTES = 64
#: Per heartbeat interval: the peer's PING and its PONG to ours, <= 42 bytes each
#: under CurveZMQ, times three.
COMMAND_BYTES_PER_BEAT = 256
#: Above the messages a connection may hold: the handshake (~600 bytes), libzmq's
#: 8 KiB read batch, connection metadata.
SLACK_BYTES = 256 * 2**10
#: What a connection may make libzmq hold before CurveZMQ authenticated it.
UNAUTHENTICATED_BYTES = 64 * 2**10
#: Greeting (64) + WELCOME (2 + 168) + the smallest READY (2 + 30): a CurveZMQ server
#: that has sent less has not accepted the client (its ERROR reply, 12 bytes with
#: ZAP's 3-digit status, keeps it below).
CURVE_SERVER_HANDSHAKE_BYTES = 64 + 170 + 32

# struct tcp_info (linux/tcp.h): u64 tcpi_bytes_acked at 120, tcpi_bytes_received at 128.
_TCP_INFO_BYTES = 136
_ACKED_AND_RECEIVED = struct.Struct("=QQ")
_ACKED_OFFSET = 120
#: Longest sleep of an idle guard between checks (it wakes earlier on any traffic).
_IDLE_WAKE_S = 1.0


def guard_supported() -> bool:
    """Whether this platform gives what the guard needs (Linux: TCP_INFO, SIOCINQ, epoll)."""
    return (
        sys.platform.startswith("linux")
        and hasattr(socket, "TCP_INFO")
        and hasattr(select, "epoll")
    )


class TcpCounters(NamedTuple):
    """A connection's kernel counters: bytes the application (libzmq) read, bytes we sent and saw acked."""

    read: int
    acked: int


def tcp_counters(sock: socket.socket) -> TcpCounters | None:
    """``sock``'s counters, or ``None`` where the kernel does not give them (or it closed).

    TCP_INFO first, then SIOCINQ: bytes arriving between the two calls make ``read``
    smaller, never larger, than what libzmq had read by the second call.
    """
    queued = array.array("i", [0])
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCP_INFO_BYTES)
        fcntl.ioctl(sock.fileno(), termios.FIONREAD, queued)  # FIONREAD is SIOCINQ
    except OSError:
        return None
    if len(info) < _TCP_INFO_BYTES:  # kernel older than 4.1
        return None
    acked, received = _ACKED_AND_RECEIVED.unpack_from(info, _ACKED_OFFSET)
    return TcpCounters(read=received - queued[0], acked=acked)


@dataclass
class Ledger:
    """What the application received from one connection, and since when it exists."""

    opened: float
    delivered: int = 0
    frames: int = 0

    def deliver(self, nbytes: int, nframes: int) -> None:
        self.delivered += nbytes
        self.frames += nframes


@dataclass(frozen=True)
class GuardBudget:
    """How much one incoming connection may make libzmq hold.

    ``message_bytes``: the largest frame accepted (MAXMSGSIZE; a legitimate
    message is at most that, header included); ``hwm``: RCVHWM;
    ``heartbeat_ivl_ms``: the ZMTP heartbeat interval (peers use the same);
    ``curve``: the socket is a CurveZMQ server (enables the unauthenticated limit).
    """

    message_bytes: int
    hwm: int
    heartbeat_ivl_ms: int
    curve: bool = False

    @property
    def limit(self) -> int:
        """Bytes an authenticated connection may make libzmq hold: ``(hwm + 2) * message_bytes + slack``."""
        return (self.hwm + 2) * self.message_bytes + SLACK_BYTES

    def authenticated(self, counters: TcpCounters) -> bool:
        """False while a CurveZMQ server has not sent READY on this connection."""
        return not self.curve or counters.acked >= CURVE_SERVER_HANDSHAKE_BYTES

    def held(self, ledger: Ledger, counters: TcpCounters, now: float) -> int:
        """An upper bound of what libzmq holds for the connection (see the module docstring)."""
        beats = 1 + max(0.0, now - ledger.opened) * 1000 / self.heartbeat_ivl_ms
        return (
            counters.read
            - ledger.delivered
            - FRAME_OVERHEAD_BYTES * ledger.frames
            - int(COMMAND_BYTES_PER_BEAT * beats)
        )

    def excess(self, ledger: Ledger, counters: TcpCounters, now: float) -> int:
        """Bytes above what the connection may hold; positive: cut it."""
        if not self.authenticated(counters):
            return counters.read - UNAUTHENTICATED_BYTES
        return self.held(ledger, counters, now) - self.limit


@dataclass
class _Connection:
    sock: socket.socket  # our duplicate of libzmq's descriptor
    ledger: Ledger
    cut: bool = False
    last_read: int = -1


class ConnectionGuard:
    """Watches the incoming connections of one bound ZeroMQ socket; cuts those over budget.

    Create it before ``bind`` (so no accepted connection is missed), :meth:`start`
    it with the bound TCP port after, report every received message with
    :meth:`delivered`, and :meth:`close` it before the socket's context is
    destroyed. Only connections accepted on that port are guarded. Linux only
    (see :func:`guard_supported`).

    Pacing: while some connection's ``read`` grows, a check every ``interval_s``;
    when none grew during one interval, the thread sleeps in ``epoll`` until data
    arrives on any guarded connection (edge-triggered: new bytes, not bytes
    waiting in a backed-up queue), a connection is accepted, or :meth:`close`.
    An idle node costs no wake-ups; an attack is seen from its first packet.
    """

    def __init__(self, bound: zmq.Socket[Any], budget: GuardBudget, interval_s: float) -> None:
        if not guard_supported():
            raise RuntimeError("ConnectionGuard needs Linux (TCP_INFO, SIOCINQ, epoll)")
        self.budget = budget
        self._interval_s = interval_s
        self._bound = bound
        self._lock = threading.Lock()
        self._connections: dict[int, _Connection] = {}
        self._cut = 0
        self._port: int | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        address = f"inproc://p2pfl-guard-{id(self):x}"
        bound.monitor(address, zmq.EVENT_ACCEPTED | zmq.EVENT_DISCONNECTED)
        # A plain socket in the same context, used only under the lock (from two threads).
        self._events: zmq.Socket[Any] = zmq.Socket(bound.context, zmq.PAIR)
        self._events.linger = 0
        self._events.rcvhwm = 0  # never drop an event: a missed ACCEPTED is an unguarded peer
        self._events.connect(address)
        self._epoll = select.epoll()
        self._wake_r, self._wake_w = os.pipe()
        self._epoll.register(self._wake_r, select.EPOLLIN)
        self._epoll.register(cast(int, self._events.get(zmq.FD)), select.EPOLLIN)

    @property
    def cut(self) -> int:
        """Connections shut down for holding too much, since the guard started."""
        return self._cut

    @property
    def watched(self) -> int:
        """Connections currently guarded."""
        with self._lock:
            return len(self._connections)

    def start(self, port: int, name: str = "p2pfl-guard") -> None:
        """Guard the connections accepted on TCP ``port`` (the bound socket's)."""
        self._port = port
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def delivered(self, frames: Sequence[Any]) -> None:
        """Count a message the application received (``zmq.Frame`` objects, ``copy=False``)."""
        try:
            fd = frames[0].get(zmq.SRCFD)
        except (zmq.ZMQError, AttributeError):
            return
        nbytes = sum(len(f) for f in frames)
        with self._lock:
            if self._thread is None:
                return
            self._drain()
            connection = self._connections.get(fd)
            if connection is not None:
                connection.ledger.deliver(nbytes, len(frames))

    def check(self) -> bool:
        """One pass over the connections; whether any of them read anything since the last."""
        active = False
        with self._lock:
            self._drain()
            now = time.monotonic()
            for connection in self._connections.values():
                if connection.cut:
                    continue
                counters = tcp_counters(connection.sock)
                if counters is None:
                    continue
                reading = counters.read != connection.last_read
                connection.last_read = counters.read
                active = active or reading
                # Only while libzmq reads: a connection whose pipe is full (input stopped)
                # holds complete messages the application will take, and libzmq 4.3.5
                # aborts the process if such a connection hangs up and it then sends a
                # heartbeat (see docs/security.md). It is cut once it reads again.
                if reading and self.budget.excess(connection.ledger, counters, now) > 0:
                    with contextlib.suppress(OSError):
                        connection.sock.shutdown(socket.SHUT_RDWR)
                    connection.cut = True
                    self._cut += 1
        return active

    def close(self) -> None:
        """Stop the thread, stop monitoring, release every duplicate; idempotent."""
        self._stop.set()
        if self._thread is not None:
            with contextlib.suppress(OSError):
                os.write(self._wake_w, b"x")
            self._thread.join()
        with self._lock:
            self._thread = None
            if self._events.closed:
                return
            with contextlib.suppress(zmq.ZMQError):
                self._bound.disable_monitor()
            self._events.close(linger=0)
            for fd in list(self._connections):
                self._forget(fd)
            self._epoll.close()
            os.close(self._wake_r)
            os.close(self._wake_w)

    def _run(self) -> None:
        active = True
        while True:
            if active:
                self._stop.wait(self._interval_s)
            else:  # nothing moved for an interval: wait for bytes, a connection or close()
                self._epoll.poll(_IDLE_WAKE_S)
            if self._stop.is_set():
                return
            active = self.check()

    # -- inside the lock ------------------------------------------------------------

    def _drain(self) -> None:
        events = self._events
        while cast(int, events.get(zmq.EVENTS)) & zmq.POLLIN:
            head, _ = events.recv_multipart(zmq.NOBLOCK)
            event, fd = struct.unpack("=HI", head[:6])
            if event == zmq.EVENT_ACCEPTED:
                self._forget(fd)
                connection = self._adopt(fd)
                if connection is not None:
                    self._connections[fd] = connection
            elif event == zmq.EVENT_DISCONNECTED:
                self._forget(fd)

    def _forget(self, fd: int) -> None:
        connection = self._connections.pop(fd, None)
        if connection is not None:
            # unregister first: libzmq may still hold the same socket open
            with contextlib.suppress(OSError):
                self._epoll.unregister(connection.sock.fileno())
            connection.sock.close()

    def _adopt(self, fd: int) -> _Connection | None:
        """Our own descriptor of libzmq's connection ``fd``, if it is a TCP one accepted on our port."""
        try:
            dup = os.dup(fd)
        except OSError:  # libzmq closed it already; its DISCONNECTED follows
            return None
        try:
            sock = socket.socket(fileno=dup)
        except OSError:  # the number was reused for something that is not a socket
            os.close(dup)
            return None
        try:
            ours = sock.family in (socket.AF_INET, socket.AF_INET6) and (
                sock.type == socket.SOCK_STREAM and sock.getsockname()[1] == self._port
            )
            if ours:
                self._epoll.register(sock.fileno(), select.EPOLLIN | select.EPOLLET)
        except OSError:
            ours = False
        if not ours:
            sock.close()
            return None
        return _Connection(sock, Ledger(opened=time.monotonic()))
