"""Compressed vectors between two OS processes: encode + send + decode, vs raw pyzmq of the same bytes.

For each operator, one run, alternating repetitions so machine load hits both alike:

- ``raw``:  pyzmq DEALER -> ROUTER, the compressed message's bytes (header and payload,
            already encoded) sent ``copy=False``; the receiver answers a 1-byte ack.
- ``full``: the sender compresses the vector (:mod:`p2pfl.compression`), encodes it
            (:func:`p2pfl.wire.encode`, XXH3) and sends it through a :class:`ZmqTransport`; the
            receiver decodes (:func:`p2pfl.wire.decode`), checks it as a node does
            (:func:`p2pfl.validation.validate`: indices, codes, finiteness) and decompresses it
            to float32.

Each sample streams ``--stream`` messages and waits for one ack. Prints medians: ms per
message, the wire's MB/s, the model's MB/s (float32 bytes of the vector moved per second,
what compression buys), and the ratio of raw's time to full's (1.0: the codec and the
transport cost nothing beyond pyzmq's own sending of those bytes), then each step's cost
in one process. On loopback the operators' arithmetic (top-k's selection, QSGD's
random draws) dominates: compression pays where the link, not the CPU, is the bottleneck.

    python benchmarks/bench_compression.py [--mb 40] [--reps 7] [--stream 4]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time

import torch
import zmq

from p2pfl import wire
from p2pfl.compression import compression_generator, decompress, make_compressor
from p2pfl.transport import TransportOptions, ZmqTransport, free_tcp_ports, inbound_frame_limit
from p2pfl.validation import Expectations, validate

OPERATORS: list[tuple[str, dict[str, object]]] = [
    ("none", {}),
    ("fp16", {}),
    ("int8", {}),
    ("qsgd", {}),
    ("top_k", {"ratio": 0.01}),
    ("random_k", {"ratio": 0.01}),
]


def options(payload_bytes: int) -> TransportOptions:
    return TransportOptions(
        hwm=16,
        send_timeout_s=60.0,
        reconnect_ivl_ms=20,
        max_message_bytes=inbound_frame_limit(payload_bytes),
    )


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
        if frames[0].bytes == b"last":
            router.send_multipart([ident, b"k"])
    router.close()
    ctx.term()


async def serve_p2pfl(port: int, parent: str, d: int, name: str, payload_bytes: int) -> None:
    encoding = make_compressor(name, dict(OPERATORS)[name]).encoding(d)
    expect = Expectations(
        node_id=1, neighbours=frozenset({0}), param_count=d, encoding=encoding, rounds_ahead=2**40
    )
    async with ZmqTransport(
        1, f"127.0.0.1:{port}", {0: parent}, options=options(payload_bytes)
    ) as t:
        print("ready", flush=True)
        while True:
            _, frames = await t.recv()
            if len(frames) == 1:
                break  # stop
            message = wire.decode(frames, max_payload_bytes=2**31)
            assert isinstance(message, wire.Params | wire.Packed)
            validate(message, 0, expect, set())
            decompress(wire.payload_of(message))
            if message.round == 0:
                await t.send(0, [b"k"])


def start(args: list[str]) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, __file__, *args], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != b"ready":
        raise RuntimeError(f"receiver {args} did not start")
    return proc


async def bench(name: str, vector: torch.Tensor, reps: int, stream: int) -> dict[str, float]:
    d = vector.numel()
    comp = make_compressor(name, dict(OPERATORS)[name])
    frames = wire.encode(wire.vector_message(0, 1, comp.compress(vector, torch.Generator())))
    blob = b"".join(bytes(f) for f in frames)  # the same number of bytes, for raw pyzmq
    nbytes = len(blob)
    payload = max(4 * d, comp.encoding(d).payload_bytes)
    raw_port, port = free_tcp_ports(2)
    sender = ZmqTransport(0, "127.0.0.1:0", {1: f"127.0.0.1:{port}"}, options=options(payload))
    children = [
        start(["--serve-raw", str(raw_port)]),
        start(["--serve-p2pfl", str(port), sender.endpoint, str(d), name, str(payload)]),
    ]
    ctx = zmq.Context()
    raw = ctx.socket(zmq.DEALER)
    raw.linger = 0
    raw.connect(f"tcp://127.0.0.1:{raw_port}")
    times: dict[str, list[float]] = {"raw": [], "full": []}
    try:
        for rep in range(reps + 1):  # one warm-up
            begin = time.perf_counter()
            for k in range(stream, 0, -1):
                raw.send_multipart([b"last" if k == 1 else b"more", blob], copy=False)
            raw.recv()
            t_raw = time.perf_counter() - begin
            begin = time.perf_counter()
            for k in range(stream, 0, -1):  # round 0 marks the last message
                gen = compression_generator(0, 0, k)
                message = wire.vector_message(0, k - 1, comp.compress(vector, gen))
                await sender.send(1, wire.encode(message))
            await sender.recv()
            t_full = time.perf_counter() - begin
            if rep:
                times["raw"].append(t_raw / stream)
                times["full"].append(t_full / stream)
    finally:
        raw.send(b"stop")
        raw.close()
        ctx.term()
        await sender.send(1, [b"stop"])
        for child in children:
            try:
                child.wait(timeout=20)
            except subprocess.TimeoutExpired:
                child.kill()
        await sender.close()
    raw_t, full_t = statistics.median(times["raw"]), statistics.median(times["full"])
    return {"bytes": nbytes, "raw": raw_t, "full": full_t, "model_mb": 4 * d / 1e6}


async def run(mb: float, reps: int, stream: int) -> None:
    d = int(mb * 1e6) // 4
    vector = torch.randn(d, generator=torch.Generator().manual_seed(0))
    print(
        f"vector of {d:,} float32 ({4 * d / 1e6:.0f} MB), {reps} repetitions of {stream} messages, medians"
    )
    print(
        f"  {'operator':<10} {'wire MB':>8} {'raw ms':>8} {'full ms':>8} {'wire MB/s':>10} "
        f"{'model MB/s':>11} {'raw/full':>9}"
    )
    for name, _ in OPERATORS:
        r = await bench(name, vector, reps, stream)
        print(
            f"  {name:<10} {r['bytes'] / 1e6:8.2f} {r['raw'] * 1e3:8.1f} {r['full'] * 1e3:8.1f} "
            f"{r['bytes'] / r['full'] / 1e6:10.0f} {r['model_mb'] / r['full']:11.0f} "
            f"{r['raw'] / r['full']:9.2f}",
            flush=True,
        )
    print("  in process, ms: compress, encode (xxh3), decode + validate, decompress")
    for name, _ in OPERATORS:
        t = in_process(name, vector, reps)
        print(
            f"  {name:<10} {t['compress']:8.1f} {t['encode']:8.1f} {t['check']:8.1f} "
            f"{t['decompress']:8.1f}",
            flush=True,
        )


def in_process(name: str, vector: torch.Tensor, reps: int) -> dict[str, float]:
    """Median ms of each step, in one process: compress, encode, decode + validate, decompress."""
    d = vector.numel()
    comp = make_compressor(name, dict(OPERATORS)[name])
    expect = Expectations(
        node_id=1,
        neighbours=frozenset({0}),
        param_count=d,
        encoding=comp.encoding(d),
        rounds_ahead=2**40,
    )
    steps: dict[str, list[float]] = {"compress": [], "encode": [], "check": [], "decompress": []}
    for k in range(reps):
        t0 = time.perf_counter()
        payload = comp.compress(vector, compression_generator(0, 0, k))
        t1 = time.perf_counter()
        frames = wire.encode(wire.vector_message(0, k, payload))
        t2 = time.perf_counter()
        received = [bytes(frames[0]), bytearray(frames[1])]  # private buffers, as from ZeroMQ
        t2b = time.perf_counter()
        message = wire.decode(received, max_payload_bytes=2**31)
        assert isinstance(message, wire.Params | wire.Packed)
        validate(message, 0, expect, set())
        t3 = time.perf_counter()
        decompress(wire.payload_of(message))
        t4 = time.perf_counter()
        for key, value in zip(steps, (t1 - t0, t2 - t1, t3 - t2b, t4 - t3), strict=True):
            steps[key].append(value * 1e3)
    return {key: statistics.median(v) for key, v in steps.items()}


def main() -> None:
    torch.set_num_threads(1)  # one core per process: sender and receiver share the machine
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--mb", type=float, default=40.0, help="float32 vector size in MB (default 40)"
    )
    parser.add_argument("--reps", type=int, default=7, help="measured repetitions (default 7)")
    parser.add_argument("--stream", type=int, default=4, help="messages per sample (default 4)")
    parser.add_argument("--serve-raw", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--serve-p2pfl", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_raw is not None:
        serve_raw(args.serve_raw)
    elif args.serve_p2pfl is not None:
        port, parent, d, name, payload = args.serve_p2pfl
        asyncio.run(serve_p2pfl(int(port), parent, int(d), name, int(payload)))
    else:
        asyncio.run(run(args.mb, args.reps, args.stream))


if __name__ == "__main__":
    main()
