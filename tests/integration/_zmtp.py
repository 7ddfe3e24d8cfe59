"""Raw ZMTP 3 bytes and a raw TCP peer, for tests that must send what no ZeroMQ socket sends.

libzmq never puts half a handshake or the first frames of an unfinished message on
the wire (a sending pipe publishes whole messages), so attacks on those states are
written here byte by byte (ZeroMQ RFC 23): :func:`greeting`, :func:`frame_header`,
:func:`command`; :class:`RawPeer` streams bytes on a plain TCP
connection and records when the other side drops it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

GREETING_BYTES = 64


def greeting(mechanism: bytes) -> bytes:
    """A ZMTP 3.0 client greeting (signature, version, mechanism, as-server = 0)."""
    return b"\xff" + bytes(8) + b"\x7f" + b"\x03\x00" + mechanism.ljust(20, b"\0") + bytes(32)


def frame_header(size: int, *, more: bool = False, command: bool = False) -> bytes:
    """The flags and size that precede a frame of ``size`` bytes."""
    flags = (0x01 if more else 0) | (0x04 if command else 0)
    if size < 256:
        return bytes([flags, size])
    return bytes([flags | 0x02]) + size.to_bytes(8, "big")


def command(name: bytes, body: bytes) -> bytes:
    data = bytes([len(name)]) + name + body
    return frame_header(len(data), command=True) + data


class RawPeer:
    """One TCP connection to ``host:port``; :attr:`dropped` is set when the other side closes it."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.sent = 0
        self.received = b""
        self.dropped = asyncio.Event()
        self.dropped_at: float | None = None
        self._watch = asyncio.create_task(self._read_until_closed())

    @classmethod
    async def connect(cls, host: str, port: int) -> RawPeer:
        reader, writer = await asyncio.open_connection(host, port)
        return cls(reader, writer)

    async def send(self, data: bytes | memoryview) -> bool:
        """Write ``data``; False once the connection was dropped (even while blocked on it)."""
        if self.dropped.is_set():
            return False
        self.writer.write(data)
        drain = asyncio.ensure_future(self.writer.drain())
        dropped = asyncio.ensure_future(self.dropped.wait())
        try:
            # A peer that closed without reading leaves our window shut: drain() alone
            # would wait forever, so the drop (seen by the reader) ends the wait too.
            await asyncio.wait({drain, dropped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            dropped.cancel()
            drain.cancel()
            await asyncio.gather(drain, dropped, return_exceptions=True)
        if drain.cancelled() or drain.exception() is not None:
            self._drop()
            return False
        self.sent += len(data)
        return not self.dropped.is_set()

    async def stream(self, chunk: bytes | memoryview, total: int) -> int:
        """Send ``chunk`` repeatedly until ``total`` bytes went out or the peer dropped us."""
        while self.sent < total and await self.send(chunk):
            pass
        return self.sent

    async def close(self) -> None:
        self._watch.cancel()
        # abort, not close: close() first flushes what we wrote, which a peer that
        # dropped us without reading never takes
        self.writer.transport.abort()
        with contextlib.suppress(ConnectionError, OSError, asyncio.CancelledError):
            await self.writer.wait_closed()
        with contextlib.suppress(asyncio.CancelledError):
            await self._watch

    async def _read_until_closed(self) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await self.reader.read(65536):
                self.received += data
        self._drop()

    def _drop(self) -> None:
        if not self.dropped.is_set():
            self.dropped_at = time.monotonic()
            self.dropped.set()
