"""A live node keeps serving its honest neighbours while a listed neighbour fuzzes it.

Three ``p2pfl node`` processes on a ring (0-1-2), insecure, plus node 3: a listed
neighbour of node 0 that no process runs. The test speaks for node 3 with a raw
PUSH declaring node 3 in its connection metadata: a valid Hello and Bye (so node 0 neither waits
for it at the handshake nor in the rounds), then ``N`` hostile messages while
node 0 runs its rounds: random bytes, truncated and bit-flipped headers, bad
msgpack, unknown kinds, huge shape claims, NaN vectors, wrong lengths, stale and
far-future rounds, claims to be node 1, duplicates, oversized payloads.

Asserted: every node exits 0 after all rounds, the honest nodes' accuracy is in
the range of a fault-free run, and node 0's counters account for every message:
``accepted + sum(rejected by reason) == sent`` for peer 3. Messages larger than
ZeroMQ's ``MAXMSGSIZE`` (``network.max_message_mb``) never reach the node: libzmq
drops them and disconnects the sender. They are sent on a second connection
after the rest, and the test checks that connection was dropped and that none of
them was counted.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

import msgpack
import numpy as np
import pytest
import torch
import zmq
import zmq.asyncio
from _procs import LiveNet, no_leftover_processes, rejection_counts, ring_with_attacker
from zmq.utils.monitor import recv_monitor_message

from p2pfl import wire
from p2pfl._compat import timeout as async_timeout
from p2pfl.compression import QuantPayload, SparsePayload

ATTACKER = 3
TARGET = 0
MAX_MESSAGE_MB = 1.0


@pytest.fixture
def run_dir(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path
    assert no_leftover_processes(tmp_path) == []


def _params(sender: int, round_: int, vector: torch.Tensor) -> list[bytes]:
    return [bytes(f) for f in wire.encode(wire.Params(sender, round_, vector))]


def hostile_messages(
    rng: np.random.Generator, d: int, max_bytes: int, current: Callable[[], int]
) -> Iterator[list[bytes]]:
    """An endless stream of messages that node 0 must all refuse (NaN-poisoned bases).

    Every well-formed Params carries a NaN, so even a mutation that happens to
    produce a valid header cannot be accepted. ``current()`` is node 0's round
    (at least): ``current() + 1`` is inside its window, so a message for it
    gets as far as the length and NaN checks.
    """
    nan = torch.zeros(d)
    nan[int(rng.integers(d))] = float("nan")
    base = _params(ATTACKER, 1, nan)

    def header(**fields: object) -> bytes:
        h: dict[str, object] = {
            "v": 1,
            "kind": "params",
            "sender": ATTACKER,
            "round": 1,
            "dtype": "float32",
            "shape": [d],
            "nbytes": 4 * d,
            "xxh3": 0,
        }
        h.update(fields)
        return msgpack.packb(h)

    def random_bytes() -> list[bytes]:
        return [rng.bytes(int(rng.integers(0, 64))) for _ in range(int(rng.integers(1, 4)))]

    def truncated() -> list[bytes]:
        return [base[0][: int(rng.integers(0, len(base[0])))], base[1]]

    def flipped() -> list[bytes]:
        frames = [bytearray(f) for f in base]
        which = int(rng.integers(2))
        for _ in range(int(rng.integers(1, 4))):
            i = int(rng.integers(len(frames[which])))
            frames[which][i] ^= 1 << int(rng.integers(8))
        return [bytes(f) for f in frames]

    def bad_msgpack() -> list[bytes]:
        return [b"\xc1" + rng.bytes(8), base[1]]

    def wrong_kind() -> list[bytes]:
        return [header(kind="evil"), base[1]]

    def huge_shape() -> list[bytes]:
        return [header(shape=[2**39], nbytes=2**41), b"\0" * 16]

    def wrong_length() -> list[bytes]:
        return _params(ATTACKER, current() + 1, torch.zeros(d + int(rng.integers(1, 9))))

    def non_finite() -> list[bytes]:
        bad = torch.zeros(d)
        bad[int(rng.integers(d))] = float(rng.choice([np.nan, np.inf, -np.inf]))
        return _params(ATTACKER, current() + 1, bad)

    def stale() -> list[bytes]:
        return _params(ATTACKER, 0, nan)

    def future() -> list[bytes]:
        return _params(ATTACKER, int(rng.integers(10**3, 10**9)), nan)

    def impersonating() -> list[bytes]:
        return _params(1, 1, nan)

    def oversized() -> list[bytes]:
        return [base[0], b"\0" * (max_bytes + 1)]

    kinds = [
        random_bytes,
        truncated,
        flipped,
        bad_msgpack,
        wrong_kind,
        huge_shape,
        wrong_length,
        non_finite,
        stale,
        future,
        impersonating,
        oversized,
    ]
    previous: list[bytes] = base
    while True:
        if rng.random() < 0.05:
            yield previous  # a duplicate of the last message
            continue
        k = int(rng.integers(len(kinds)))
        previous = kinds[k]() if kinds[k] is not oversized or rng.random() < 0.1 else base
        yield previous


class TargetRound:
    """A sink at the attacker's address that also tells the target's round.

    The target sends its vectors there too; the latest round among them is where it is
    now. Its log lines reach the test late on a loaded machine, while a round takes
    milliseconds: hostile vectors stamped from the log would be refused as stale
    before any of the checks they are meant to hit.
    """

    def __init__(self, net: LiveNet) -> None:
        self._ctx = zmq.Context()  # a plain socket: drained without blocking
        self._sock: zmq.Socket[bytes] = net.sink(self._ctx)  # type: ignore[arg-type,assignment]
        self._net = net
        self._seen = 0

    def current(self) -> int:
        """The round to stamp a vector with: the target's current one (or next)."""
        while True:
            try:
                frames = self._sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                break
            with contextlib.suppress(Exception):  # whatever it is, only its round matters
                message = wire.decode(frames)
                if message.sender == TARGET and isinstance(message, wire.Params | wire.Packed):
                    self._seen = max(self._seen, message.round)
        events = self._net.events[TARGET]
        logged = max(e["round"] for e in events if e["event"] == "round")
        return max(self._seen, logged + 1)

    def close(self) -> None:
        self._ctx.destroy(linger=0)


async def fuzz_live_node(run_dir: Path, count: int, rounds: int) -> None:
    net = LiveNet(
        run_dir,
        ring_with_attacker(3, [TARGET]),
        attacker=ATTACKER,
        rounds=rounds,
        round_timeout=2.0,
        hello_timeout=15.0,
        max_message_mb=MAX_MESSAGE_MB,
    )
    ctx = zmq.asyncio.Context()
    sent = 0
    huge_sent = 0
    try:
        sink = TargetRound(net)  # node 0's messages to node 3 land here
        await net.start()
        async with async_timeout(30 + 0.15 * rounds + count / 1000):
            start = await net.until(TARGET, "start")
            d = int(start["parameters"])
            max_bytes = 4 * d + wire.MAX_HEADER_BYTES
            assert max_bytes < MAX_MESSAGE_MB * 2**20  # "oversized" ones reach the node
            dealer = net.attack(ctx, TARGET)
            hello = wire.Hello(ATTACKER, "fuzz", str(start["fingerprint"]), d, 0)
            await dealer.send_multipart(wire.encode(hello))
            await dealer.send_multipart(wire.encode(wire.Bye(ATTACKER, "not waited for")))
            sent += 2
            await net.until(TARGET, "round", 1)
            rng = np.random.default_rng(1234)

            current = sink.current

            for frames in hostile_messages(rng, d, max_bytes, current):
                if sent >= count + 2:
                    break
                await dealer.send_multipart(frames, copy=len(frames[-1]) < 4096)
                sent += 1
            # Larger than MAXMSGSIZE: libzmq drops the message and the connection.
            huge = ctx.socket(zmq.PUSH)
            huge.linger = 0
            monitor = huge.get_monitor_socket(zmq.EVENT_DISCONNECTED | zmq.EVENT_CONNECTED)
            huge.connect(f"tcp://{net.addresses[TARGET]}")
            await huge.send_multipart([b"\0" * int(MAX_MESSAGE_MB * 2**20 + 1)])
            huge_sent += 1
            events = []
            while zmq.EVENT_DISCONNECTED not in events:
                events.append((await recv_monitor_message(monitor))["event"])
            huge.disable_monitor()
            huge.close()
            codes = await net.wait()
        sink.close()
    finally:
        await net.close()
        ctx.destroy(linger=0)

    assert codes == {0: 0, 1: 0, 2: 0}
    for k in net.honest:
        assert [e["round"] for e in net.rounds(k)] == list(range(1, rounds + 1)), k
        evals = [e for e in net.log(k) if e["event"] == "eval"]
        assert evals and evals[-1]["accuracy"] > 0.5, (k, evals)
        assert net.end(k)["status"] == "done"
    end = net.end(TARGET)
    accepted, rejected = rejection_counts(end, ATTACKER)
    assert accepted == 2  # the Hello and the Bye
    assert accepted + sum(rejected.values()) == sent  # the MAXMSGSIZE one is not among them
    assert huge_sent == 1
    for reason in ("decode_error", "impersonation", "stale_round", "future_round"):
        assert rejected.get(reason, 0) > 0, (reason, rejected)
    for reason in ("oversized", "wrong_length", "non_finite"):
        assert rejected.get(reason, 0) > 0, (reason, rejected)
    # The honest neighbours' messages were all accepted, none refused.
    for peer in (1, 2):
        ok, refused = rejection_counts(end, peer)
        assert ok >= rounds and refused == {}, (peer, ok, refused)


@pytest.mark.timeout(120)
async def test_live_node_survives_ten_thousand_hostile_messages(run_dir: Path) -> None:
    await fuzz_live_node(run_dir, count=10_000, rounds=400)


@pytest.mark.slow
@pytest.mark.timeout(600)
async def test_live_node_survives_a_hundred_thousand_hostile_messages(run_dir: Path) -> None:
    await fuzz_live_node(run_dir, count=100_000, rounds=2000)


# ----------------------------------------------------------------------------- compressed runs

COMPRESSION = {
    "top_k": '[compression]\nname = "top_k"\nparams = { ratio = 0.05 }\nscheme = "choco"\n',
    "int8": '[compression]\nname = "int8"\nparams = { block = 64 }\n',
}


def hostile_compressed_messages(
    rng: np.random.Generator, d: int, name: str, current: Callable[[], int]
) -> Iterator[list[bytes]]:
    """Compressed vectors node 0 (running ``name``) must all refuse: each breaks one rule of
    the run's encoding (count, block, levels, index range and order, dtype, finiteness)
    or of the wire (sizes, checksum)."""
    k = max(1, int(np.ceil(0.05 * d)))
    block = 64
    blocks = -(-d // block)

    def frames(message: wire.Message) -> list[bytes]:
        return [bytes(f) for f in wire.encode(message)]

    def sparse(idx: np.ndarray, values: np.ndarray, length: int = d) -> list[bytes]:
        payload = SparsePayload(
            length,
            torch.from_numpy(idx.astype(np.int32)),
            torch.from_numpy(values.astype(np.float32)),
        )
        return frames(wire.Packed(ATTACKER, current() + 1, payload))

    def quant(
        codes: np.ndarray, scales: np.ndarray, b: int = block, levels: int = 127
    ) -> list[bytes]:
        payload = QuantPayload(
            b,
            levels,
            torch.from_numpy(scales.astype(np.float32)),
            torch.from_numpy(codes.astype(np.int8)),
        )
        return frames(wire.Packed(ATTACKER, current() + 1, payload))

    def good_idx(count: int = k) -> np.ndarray:
        return np.sort(rng.choice(d, size=count, replace=False))

    def ones(count: int = k) -> np.ndarray:
        return np.ones(count)

    def codes() -> np.ndarray:
        return rng.integers(-127, 128, size=d)

    def scales(count: int = blocks) -> np.ndarray:
        return rng.random(count)

    def poisoned(values: np.ndarray) -> np.ndarray:
        values = values.astype(np.float32).copy()
        values[int(rng.integers(len(values)))] = rng.choice([np.nan, np.inf, -np.inf])
        return values

    kinds: list[Callable[[], list[bytes]]]
    if name == "top_k":
        kinds = [
            lambda: sparse(np.append(good_idx(k - 1), d + int(rng.integers(0, 9))), ones()),
            lambda: sparse(good_idx()[::-1].copy(), ones()),  # decreasing
            lambda: sparse(np.repeat(good_idx(1), k), ones()),  # duplicates
            lambda: sparse(good_idx(k + 1), ones(k + 1)),  # another count
            lambda: sparse(good_idx(), poisoned(ones())),
            lambda: sparse(good_idx(), ones(), length=d + 1),
            lambda: frames(wire.Params(ATTACKER, current() + 1, torch.ones(d))),
            lambda: quant(codes(), scales()),
        ]
    else:
        kinds = [
            lambda: quant(np.append(codes()[:-1], -128), scales()),
            lambda: quant(codes(), -scales()),
            lambda: quant(codes(), poisoned(scales())),
            lambda: quant(np.full(d, 127), np.full(blocks, 3e38)),  # overflows when decoded
            lambda: quant(codes(), scales(-(-d // 32)), b=32),
            lambda: quant(np.clip(codes(), -9, 9), scales(), levels=8),
            lambda: sparse(good_idx(), ones()),
            lambda: frames(wire.Params(ATTACKER, current() + 1, torch.ones(d))),
        ]

    def resized() -> list[bytes]:  # header sizes that disagree with the payload
        base = kinds[int(rng.integers(len(kinds)))]()
        header = msgpack.unpackb(base[0])
        if header.get("kind") == "params":
            return [base[0], base[1][:-4]]
        key = "count" if header["kind"] == "sparse" else "block"
        header[key] = max(1, header[key] + int(rng.choice([-1, 1])))
        return [msgpack.packb(header), base[1]]

    def flipped() -> list[bytes]:
        base = kinds[int(rng.integers(len(kinds)))]()
        payload = bytearray(base[1])
        payload[int(rng.integers(len(payload)))] ^= 1 << int(rng.integers(8))
        return [base[0], bytes(payload)]

    kinds += [resized, flipped]
    while True:
        yield kinds[int(rng.integers(len(kinds)))]()


@pytest.mark.timeout(300)
@pytest.mark.parametrize("name", sorted(COMPRESSION))
async def test_live_compressed_node_refuses_hostile_compressed_vectors(
    run_dir: Path, name: str
) -> None:
    # the rounds must outlast the sending (every message counted before the node ends):
    # 400 rounds take several times longer than 1,500 sends, loaded or not
    count, rounds = 1500, 400
    net = LiveNet(
        run_dir,
        ring_with_attacker(3, [TARGET]),
        attacker=ATTACKER,
        rounds=rounds,
        round_timeout=2.0,
        hello_timeout=15.0,
        extra_toml=COMPRESSION[name],
    )
    ctx = zmq.asyncio.Context()
    sent = 0
    try:
        sink = TargetRound(net)
        await net.start()
        async with async_timeout(180):  # about 15 s unloaded
            start = await net.until(TARGET, "start")
            d = int(start["parameters"])
            dealer = net.attack(ctx, TARGET)
            hello = wire.Hello(ATTACKER, "fuzz", str(start["fingerprint"]), d, 0)
            await dealer.send_multipart(wire.encode(hello))
            await dealer.send_multipart(wire.encode(wire.Bye(ATTACKER, "not waited for")))
            sent += 2
            await net.until(TARGET, "round", 1)
            rng = np.random.default_rng(99)

            current = sink.current

            for frames in hostile_compressed_messages(rng, d, name, current):
                if sent >= count + 2:
                    break
                await dealer.send_multipart(frames)
                sent += 1
            sent_by_round = current()
            codes = await net.wait()
        sink.close()
    finally:
        await net.close()
        ctx.destroy(linger=0)

    assert codes == {0: 0, 1: 0, 2: 0}
    for k in net.honest:
        assert [e["round"] for e in net.rounds(k)] == list(range(1, rounds + 1)), k
        assert net.end(k)["status"] == "done"
    # (else the last messages may arrive after the node ended: not a node fault)
    assert sent_by_round < rounds - 10, "the sending outlasted the run; raise rounds"
    accepted, rejected = rejection_counts(net.end(TARGET), ATTACKER)
    assert accepted == 2  # the Hello and the Bye
    assert accepted + sum(rejected.values()) == sent
    wanted = {"decode_error", "wrong_encoding", "non_finite"}
    wanted |= {"bad_index", "wrong_length"} if name == "top_k" else {"out_of_range"}
    assert wanted <= set(rejected), rejected
    for peer in (1, 2):  # the honest neighbours' compressed vectors were all accepted
        ok, refused = rejection_counts(net.end(TARGET), peer)
        assert ok >= rounds and refused == {}, (peer, ok, refused)
