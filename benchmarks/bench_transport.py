"""Moving a 40 MB float32 parameter vector between two OS processes, vs. raw pyzmq.

Measured in one run, alternating repetitions so machine load hits both alike:

- ``raw``:       pyzmq DEALER -> ROUTER, the vector's bytes sent with ``copy=False``
                 (no header, no checksum); the receiver answers a 1-byte ack.
- ``transport``: the same bytes through two :class:`ZmqTransport` objects (asyncio,
                 one frame, no codec): the cost of the transport layer alone.
- ``full``:      :func:`p2pfl.wire.encode` + ``ZmqTransport`` + :func:`p2pfl.wire.decode`
                 (XXH3 checksum computed by the sender and checked by the receiver).
- ``..._unguarded``: the same with the connection guard off
                 (``guard_interval_ms=0``, :mod:`p2pfl.transport.guard`): its cost.

The receivers limit frames as a node does (:func:`p2pfl.transport.inbound_frame_limit`
of the payload), so the guard's budget is a node's.

Each repetition is one message and its ack (latency); ``stream`` repeats the raw
and full cases with ``--stream`` messages back to back and one ack (throughput,
where the sender's checksum overlaps the previous transfer). Prints medians in ms
and MB/s (1 MB = 10**6 bytes), the ratio to raw, and the codec's own costs
measured in process (encode, decode, and a ``clone`` of the decoded vector).

    python benchmarks/bench_transport.py [--mb 40] [--reps 15] [--stream 6]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

import torch
import zmq

from p2pfl import wire
from p2pfl.transport import TransportOptions, ZmqTransport, free_tcp_ports, inbound_frame_limit


def options(payload_bytes: int, guarded: bool) -> TransportOptions:
    return TransportOptions(
        hwm=8,
        send_timeout_s=30.0,
        reconnect_ivl_ms=20,
        max_message_bytes=inbound_frame_limit(payload_bytes),
        guard_interval_ms=TransportOptions.guard_interval_ms if guarded else 0,
    )


# ----------------------------------------------------------------------------- receivers


def serve_raw(port: int) -> None:
    ctx = zmq.Context()
    router = ctx.socket(zmq.ROUTER)
    router.linger = 0
    router.bind(f"tcp://127.0.0.1:{port}")
    print("ready", flush=True)
    while True:
        ident, *frames = router.recv_multipart(copy=False)
        if frames[0].bytes == b"stop":
            break
        if frames[0].bytes != b"more":
            router.send_multipart([ident, b"k"])
    router.close()
    ctx.term()


async def serve_p2pfl(
    port: int, parent: str, decode_frames: bool, payload_bytes: int, guarded: bool
) -> None:
    opts = options(payload_bytes, guarded)
    async with ZmqTransport(1, f"127.0.0.1:{port}", {0: parent}, options=opts) as t:
        print("ready", flush=True)
        while True:
            _, frames = await t.recv()
            head = frames[0]
            if isinstance(head, zmq.Frame) and head.buffer.nbytes == 4 and head.bytes == b"stop":
                break
            last = True
            if decode_frames:
                message = wire.decode(frames, max_payload_bytes=2**31)
                last = isinstance(message, wire.Params) and message.round == 0
            if last:
                await t.send(0, [b"k"])


# ----------------------------------------------------------------------------- senders


def start(args: list[str]) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, __file__, *args], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != b"ready":
        raise RuntimeError(f"receiver {args} did not start")
    return proc


class Raw:
    def __init__(self, port: int) -> None:
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.linger = 0
        self.sock.connect(f"tcp://127.0.0.1:{port}")

    def once(self, payload: memoryview, count: int) -> float:
        begin = time.perf_counter()
        for _ in range(count - 1):
            self.sock.send_multipart([b"more", payload], copy=False)
        self.sock.send_multipart([b"last", payload], copy=False)
        self.sock.recv()
        return time.perf_counter() - begin

    def close(self) -> None:
        self.sock.send(b"stop")
        self.sock.close()
        self.ctx.term()


class P2P:
    def __init__(self, port: int, payload_bytes: int, guarded: bool) -> None:
        opts = options(payload_bytes, guarded)
        self.t = ZmqTransport(0, "127.0.0.1:0", {1: f"127.0.0.1:{port}"}, options=opts)

    async def transport_only(self, payload: memoryview) -> float:
        begin = time.perf_counter()
        await self.t.send(1, [payload])
        await self.t.recv()
        return time.perf_counter() - begin

    async def full(self, vector: torch.Tensor, count: int) -> float:
        begin = time.perf_counter()
        for k in range(count, 0, -1):  # round 0 marks the last message
            await self.t.send(1, wire.encode(wire.Params(0, k - 1, vector)))
        await self.t.recv()
        return time.perf_counter() - begin


def median_ms(f: Callable[[], object], reps: int) -> float:
    times = []
    for _ in range(reps):
        begin = time.perf_counter()
        f()
        times.append(time.perf_counter() - begin)
    return statistics.median(times) * 1e3


async def run(mb: float, reps: int, stream: int) -> None:
    n = int(mb * 1e6) // 4
    vector = torch.randn(n, generator=torch.Generator().manual_seed(0))
    payload = vector.numpy().data.cast("B")
    nbytes = payload.nbytes
    raw_port, *ports = free_tcp_ports(5)

    raw_child = start(["--serve-raw", str(raw_port)])
    raw = Raw(raw_port)
    receivers: dict[str, P2P] = {}
    children = [raw_child]
    for (name, decode, guarded), port in zip(
        (
            ("codec", True, True),
            ("plain", False, True),
            ("codec_unguarded", True, False),
            ("plain_unguarded", False, False),
        ),
        ports,
        strict=True,
    ):
        receivers[name] = P2P(port, nbytes, guarded)
        argv = ["--serve-p2pfl", str(port), receivers[name].t.endpoint, "--payload", str(nbytes)]
        argv += ["--decode"] if decode else []
        argv += [] if guarded else ["--unguarded"]
        children.append(start(argv))
    codec, plain = receivers["codec"], receivers["plain"]
    codec_u, plain_u = receivers["codec_unguarded"], receivers["plain_unguarded"]
    keys = (
        "raw",
        "transport",
        "transport_unguarded",
        "full",
        "full_unguarded",
        "raw_stream",
        "full_stream",
        "full_stream_unguarded",
    )
    times: dict[str, list[float]] = {k: [] for k in keys}
    try:
        for rep in range(reps + 2):  # two warm-up rounds
            sample = {
                "raw": raw.once(payload, 1),
                "transport": await plain.transport_only(payload),
                "transport_unguarded": await plain_u.transport_only(payload),
                "full": await codec.full(vector, 1),
                "full_unguarded": await codec_u.full(vector, 1),
                "raw_stream": raw.once(payload, stream),
                "full_stream": await codec.full(vector, stream),
                "full_stream_unguarded": await codec_u.full(vector, stream),
            }
            if rep >= 2:
                for key, value in sample.items():
                    times[key].append(value)
    finally:
        raw.close()
        for receiver in receivers.values():
            await receiver.t.send(1, [b"stop"])
        for child in children:
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.kill()
        for receiver in receivers.values():
            await receiver.t.close()

    print(f"payload {nbytes / 1e6:.1f} MB float32, {reps} repetitions, medians")
    base = statistics.median(times["raw"])
    for key in ("raw", "transport", "transport_unguarded", "full", "full_unguarded"):
        t = statistics.median(times[key])
        print(
            f"  {key:<21} {t * 1e3:7.1f} ms  {nbytes / t / 1e6:7.0f} MB/s  ratio to raw {base / t:5.2f}"
        )
    base = statistics.median(times["raw_stream"])
    for key in ("raw_stream", "full_stream", "full_stream_unguarded"):
        t = statistics.median(times[key])
        print(
            f"  {key:<21} {t * 1e3:7.1f} ms  {nbytes * stream / t / 1e6:7.0f} MB/s  "
            f"ratio to raw {base / t:5.2f}  ({stream} messages)"
        )

    frames = wire.encode(wire.Params(0, 0, vector))
    received: list[wire.Frame] = [
        bytes(frames[0]),
        bytearray(frames[1]),
    ]  # private writable buffer, as from ZeroMQ
    message = wire.decode(received, max_payload_bytes=2**31)
    assert isinstance(message, wire.Params)
    print("  in process:")
    print(
        f"    encode (xxh3)          {median_ms(lambda: wire.encode(wire.Params(0, 0, vector)), reps):6.1f} ms"
    )
    print(
        f"    decode (xxh3, view)    {median_ms(lambda: wire.decode(received, max_payload_bytes=2**31), reps):6.1f} ms"
    )
    print(f"    clone of decoded vector {median_ms(message.vector.clone, reps):6.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mb", type=float, default=40.0, help="payload size in MB (default 40)")
    parser.add_argument("--reps", type=int, default=15, help="measured repetitions (default 15)")
    parser.add_argument("--stream", type=int, default=6, help="messages per streaming sample")
    parser.add_argument("--serve-raw", type=int, help=argparse.SUPPRESS)
    parser.add_argument(
        "--serve-p2pfl", nargs=2, metavar=("PORT", "PARENT"), help=argparse.SUPPRESS
    )
    parser.add_argument("--decode", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--unguarded", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--payload", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_raw is not None:
        serve_raw(args.serve_raw)
    elif args.serve_p2pfl is not None:
        port, parent = args.serve_p2pfl
        asyncio.run(serve_p2pfl(int(port), parent, args.decode, args.payload, not args.unguarded))
    else:
        asyncio.run(run(args.mb, args.reps, args.stream))


if __name__ == "__main__":
    main()
