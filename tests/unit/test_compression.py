"""Compression: configuration, boundary validation of compressed vectors, schemes, simulator."""

from __future__ import annotations

import math

import msgpack
import pytest
import torch

from p2pfl import wire
from p2pfl.compression import (
    CompressionSpec,
    Encoding,
    QuantPayload,
    SparsePayload,
    decompress,
    direct_message,
    make_compressor,
)
from p2pfl.config import load_scenario
from p2pfl.errors import ConfigError, DecodeError, UnknownNameError
from p2pfl.experiment import build_experiment
from p2pfl.sim import Simulation
from p2pfl.sim.outputs import sim_summary
from p2pfl.validation import Expectations, RejectionCounters, screen

pytestmark = pytest.mark.timeout(60)

SMALL = [
    "topology.n=8",
    "run.rounds=3",
    "run.eval_every=3",
    "model.params.hidden=[16]",
    "training.local_steps=2",
    "byzantine.count=1",
]


def experiment(*overrides: str):  # type: ignore[no-untyped-def]
    return build_experiment(load_scenario(None, [*SMALL, *overrides]))


# ----------------------------------------------------------------------------- config


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        (["compression.gamma=0"], "compression.gamma"),
        (["compression.gamma=1.5"], "compression.gamma"),
        (["compression.scheme=gossip"], "compression.scheme"),
        (["compression.error_feedback=1"], "compression.error_feedback"),
        (
            ["compression.scheme=choco", "compression.error_feedback=true"],
            "compression.error_feedback",
        ),
        (["compression.nmae=top_k"], "compression.nmae"),
    ],
)
def test_bad_compression_settings_name_their_key(overrides: list[str], key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_scenario(None, overrides)


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        (["compression.name=zip"], "compression.name"),
        (["compression.name=top_k", "compression.params.ratio=2.0"], "compression.params.ratio"),
        (["compression.name=top_k", "compression.params.rate=0.1"], "compression.params.rate"),
        (["compression.name=qsgd", "compression.params.levels=128"], "compression.params.levels"),
        (["compression.name=int8", "compression.params.block=0"], "compression.params.block"),
    ],
)
def test_bad_operators_fail_when_the_experiment_is_built(overrides: list[str], key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        experiment(*overrides)


def test_an_unknown_operator_lists_the_valid_ones() -> None:
    with pytest.raises(UnknownNameError) as info:
        make_compressor("zip", {})
    assert {"top_k", "random_k", "qsgd", "int8", "fp16", "bf16", "none"} <= set(info.value.valid)


def test_auto_gamma_follows_the_contraction() -> None:
    top = make_compressor("top_k", {"ratio": 0.01})
    assert top.delta(4810) == pytest.approx(49 / 4810)
    assert top.auto_gamma(4810) == pytest.approx(0.7 * math.sqrt(49 / 4810))
    assert make_compressor("int8", {}).auto_gamma(4810) > 0.69
    exp = experiment("compression.name=top_k", "compression.scheme=choco")
    d = exp.initial.numel()
    assert exp.compression.gamma == pytest.approx(0.7 * math.sqrt(math.ceil(0.01 * d) / d))


# ----------------------------------------------------------------------------- validation

D = 40


def _screen(message: wire.Message | list[bytes], encoding: Encoding) -> tuple[object, dict]:  # type: ignore[type-arg]
    frames = message if isinstance(message, list) else wire.encode(message)
    e = Expectations(node_id=0, neighbours=frozenset({1}), param_count=D, encoding=encoding)
    counters = RejectionCounters()
    out = screen([bytes(f) for f in frames], 1, e, set(), counters)
    assert counters.total == 1
    return out, counters.by_reason()


def sparse(indices: list[int], values: list[float] | None = None, length: int = D) -> wire.Packed:
    vals = values if values is not None else [1.0] * len(indices)
    return wire.Packed(
        1,
        0,
        SparsePayload(
            length,
            torch.tensor(indices, dtype=torch.int32),
            torch.tensor(vals, dtype=torch.float32),
        ),
    )


def quant(codes: list[int], scales: list[float], block: int = 20, levels: int = 127) -> wire.Packed:
    return wire.Packed(
        1,
        0,
        QuantPayload(
            block,
            levels,
            torch.tensor(scales, dtype=torch.float32),
            torch.tensor(codes, dtype=torch.int8),
        ),
    )


SPARSE3 = Encoding("sparse", D, count=3)
QUANT = Encoding("quant", D, block=20, levels=127)


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (sparse([0, 5, 40]), "bad_index"),
        (sparse([-1, 5, 7]), "bad_index"),
        (sparse([5, 3, 7]), "bad_index"),
        (sparse([3, 3, 7]), "bad_index"),
        (sparse([1, 2]), "wrong_encoding"),
        (sparse([1, 2, 3], length=D + 1), "wrong_length"),
        (sparse([1, 2, 3], [1.0, float("nan"), 0.0]), "non_finite"),
        (sparse([1, 2, 3], [1.0, float("inf"), 0.0]), "non_finite"),
        (wire.Params(1, 0, torch.zeros(D)), "wrong_encoding"),
        (quant([0] * D, [1.0, 1.0]), "wrong_encoding"),
    ],
)
def test_bad_sparse_vectors_are_refused_with_a_reason(message: wire.Message, reason: str) -> None:
    out, reasons = _screen(message, SPARSE3)
    assert out is None
    assert reasons == {reason: 1}


def test_a_good_sparse_vector_passes() -> None:
    out, reasons = _screen(sparse([0, 17, 39], [1.0, -2.0, 3.0]), SPARSE3)
    assert isinstance(out, wire.Packed)
    assert reasons == {}
    assert decompress(out.payload)[17] == -2.0


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (quant([0] * (D - 1) + [-128], [1.0, 1.0]), "out_of_range"),
        (quant([5] * D, [1.0, 1.0], levels=4), "wrong_encoding"),
        (quant([0] * D, [1.0, -1.0]), "out_of_range"),
        (quant([0] * D, [1.0, float("nan")]), "non_finite"),
        (quant([127] * D, [1.0, 3e38]), "non_finite"),  # finite scale, overflowing product
        (quant([0] * D, [1.0, 1.0, 1.0, 1.0], block=10), "wrong_encoding"),
        (sparse([1, 2, 3]), "wrong_encoding"),
    ],
)
def test_bad_quantized_vectors_are_refused_with_a_reason(
    message: wire.Message, reason: str
) -> None:
    out, reasons = _screen(message, QUANT)
    assert out is None
    assert reasons == {reason: 1}


def test_codes_beyond_the_runs_levels_are_out_of_range() -> None:
    enc = Encoding("quant", D, block=20, levels=4)
    out, reasons = _screen(quant([0] * (D - 1) + [5], [1.0, 1.0], levels=4), enc)
    assert out is None and reasons == {"out_of_range": 1}


def test_half_precision_vectors_need_the_runs_dtype() -> None:
    enc = Encoding("dense", D, dtype=torch.float16)
    ok, _ = _screen(wire.Params(1, 0, torch.ones(D, dtype=torch.float16)), enc)
    assert isinstance(ok, wire.Params)
    out, reasons = _screen(wire.Params(1, 0, torch.ones(D, dtype=torch.bfloat16)), enc)
    assert out is None and reasons == {"wrong_dtype": 1}
    out, reasons = _screen(wire.Params(1, 0, torch.ones(D)), enc)
    assert out is None and reasons == {"wrong_dtype": 1}


def _packed_frames(**fields: object) -> list[bytes]:
    frames = [bytes(f) for f in wire.encode(sparse([1, 2, 3]))]
    header = msgpack.unpackb(frames[0])
    header.update(fields)
    return [msgpack.packb(header), frames[1]]


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        ({"count": 4}, "needs 32 bytes"),
        ({"count": D + 1}, "'count' must be in"),
        ({"nbytes": 25}, "needs 24 bytes"),
        ({"xxh3": 1}, "checksum"),
        ({"levels": 3}, "unexpected keys"),
    ],
)
def test_decode_refuses_inconsistent_compressed_headers(
    fields: dict[str, object], match: str
) -> None:
    with pytest.raises(DecodeError, match=match):
        wire.decode(_packed_frames(**fields))
    _, reasons = _screen(_packed_frames(**fields), SPARSE3)
    assert reasons == {"decode_error": 1}


def test_a_compressed_run_bounds_message_size_by_its_encoding() -> None:
    e = Expectations(node_id=0, neighbours=frozenset({1}), param_count=D, encoding=SPARSE3)
    assert e.max_bytes == 24 + wire.MAX_HEADER_BYTES
    big = wire.encode(wire.Params(1, 0, torch.zeros(2000)))  # over 24 + 4096 bytes
    counters = RejectionCounters()
    assert screen([bytes(f) for f in big], 1, e, set(), counters) is None
    assert counters.by_reason() == {"oversized": 1}


# ----------------------------------------------------------------------------- schemes


def test_error_feedback_sends_everything_eventually() -> None:
    # sum of what was sent + the residual left = sum of the vectors (telescoping)
    spec = CompressionSpec(make_compressor("top_k", {"ratio": 0.1}), "direct", True)
    g = torch.Generator()
    xs = [torch.randn(50, generator=g) for _ in range(20)]
    error: torch.Tensor | None = None
    sent = torch.zeros(50)
    for x in xs:
        _, decoded, error = direct_message(x, error, spec, g)
        sent += decoded
    assert error is not None
    torch.testing.assert_close(sent + error, torch.stack(xs).sum(0), rtol=1e-5, atol=1e-5)


def test_choco_with_the_identity_and_full_step_is_the_uncompressed_run() -> None:
    plain = Simulation(experiment()).run()
    choco = Simulation(experiment("compression.scheme=choco", "compression.gamma=1.0")).run()
    torch.testing.assert_close(choco.params, plain.params, rtol=1e-4, atol=1e-5)
    assert choco.bytes_sent == plain.bytes_sent


def test_direct_identity_changes_nothing() -> None:
    plain = Simulation(experiment()).run()
    fp32 = Simulation(experiment("compression.name=none", "compression.scheme=direct")).run()
    assert torch.equal(fp32.params, plain.params)


def test_bytes_are_counted_per_neighbour_as_the_wire_encodes() -> None:
    exp = experiment("byzantine.count=0", "compression.name=top_k", "compression.params.ratio=0.05")
    d = exp.initial.numel()
    k = math.ceil(0.05 * d)
    sim = Simulation(exp).run()
    summary = sim_summary(sim)

    per_message = summary["bytes_sent_per_node_per_round"] / 4  # 4-regular graph
    assert 8 * k < per_message < 8 * k + 100  # payload plus a small msgpack header
    assert summary["bytes_sent_total"] == sum(sim.bytes_sent)
    dense = sim_summary(Simulation(experiment("byzantine.count=0")).run())
    assert 4 * d < dense["bytes_sent_per_node_per_round"] / 4 < 4 * d + 100


def test_a_byzantine_neighbour_moves_its_choco_copy_by_at_most_k_coordinates() -> None:
    exp = experiment(
        "compression.name=top_k",
        "compression.params.ratio=0.02",
        "compression.scheme=choco",
        "byzantine.attack=gaussian",
        "byzantine.params.sigma=1000.0",
    )
    k = math.ceil(0.02 * exp.initial.numel())
    sim = Simulation(exp)
    copies = []
    for _ in range(2):
        before = {key: v.clone() for key, v in sim.channel.edge_hat.items()}
        sim.step()
        for key, held in sim.channel.edge_hat.items():
            moved = held - before.get(key, exp.initial)
            copies.append(int((moved != 0).sum()))
    assert copies and max(copies) <= k
    assert max(copies) > 0


def test_public_api_is_exactly_all_and_the_registry_has_every_operator() -> None:
    import p2pfl.compression as comp
    from p2pfl.compression import COMPRESSORS

    public = {n for n in dir(comp) if not n.startswith("_")}
    modules = {n for n in public if type(getattr(comp, n)).__name__ == "module"}
    assert public - modules == set(comp.__all__)
    assert COMPRESSORS.names() == sorted(
        ["none", "top_k", "random_k", "qsgd", "int8", "fp16", "bf16"]
    )
