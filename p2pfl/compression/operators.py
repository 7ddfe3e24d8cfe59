"""Compression operators: pure functions ``C(x, generator) -> payload``, and their registry.

Every operator takes a float32 vector ``x`` of shape ``(d,)`` and a
``torch.Generator`` (used only by the randomized ones) and returns a payload
(:mod:`p2pfl.compression.payload`); :func:`~p2pfl.compression.payload.decompress`
gives back ``C(x)`` as a float32 vector. Randomness comes from
``generator_for(seed, node, round, COMPRESSION_STREAM)`` (:func:`compression_generator`),
so a node process and the simulator draw the same coordinates.

Contraction (Stich et al. 2018; Koloskova, Stich & Jaggi 2019): ``C`` is a
delta-contraction, ``delta`` in (0, 1], when ``E||C(x) - x||^2 <= (1 - delta) ||x||^2``.
CHOCO-SGD converges with any such ``C`` (consensus step ``gamma`` shrinking with
``delta``). Each docstring gives the operator's ``delta``, or its variance when it
is unbiased instead (``E C(x) = x``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from p2pfl.compression.payload import (
    MAX_LEVELS,
    DensePayload,
    Encoding,
    Payload,
    QuantPayload,
    SparsePayload,
)
from p2pfl.errors import ConfigError
from p2pfl.registry import Registry, bind_parameters
from p2pfl.seeding import generator_for

__all__ = [
    "COMPRESSION_STREAM",
    "COMPRESSORS",
    "Compressor",
    "bf16",
    "compression_generator",
    "fp16",
    "int8",
    "make_compressor",
    "none",
    "qsgd",
    "random_k",
    "top_k",
]

#: The purpose coordinate of compression randomness (:func:`p2pfl.seeding.generator_for`).
COMPRESSION_STREAM = 0xC0DEC


def compression_generator(seed: int, node: int, round_: int, target: int = -1) -> torch.Generator:
    """The generator node ``node`` compresses with in round ``round_``.

    ``target >= 0`` is a Byzantine node's message to one target (each differs).
    """
    coords = (seed, node, round_, COMPRESSION_STREAM)
    return generator_for(*coords, target) if target >= 0 else generator_for(*coords)


def _count(d: int, ratio: float) -> int:
    """``k = ceil(ratio * d)``, at least 1 and at most ``d``."""
    return min(d, max(1, math.ceil(ratio * d)))


def _check_ratio(ratio: float) -> None:
    if not (math.isfinite(ratio) and 0.0 < ratio <= 1.0):
        raise ConfigError(f"compression.params.ratio: must be in (0, 1], got {ratio}")


def none(x: torch.Tensor, generator: torch.Generator) -> Payload:
    """The identity: every coordinate in float32 (``delta = 1``)."""
    return DensePayload(x.to(torch.float32))


def fp16(x: torch.Tensor, generator: torch.Generator) -> Payload:
    """IEEE half precision (round to nearest): relative error at most ``2^-11`` per coordinate
    for ``|x_j|`` in the normal range, so ``delta >= 1 - 2^-22``. Values beyond 65504 become
    infinite, and a receiver refuses the message (``non_finite``)."""
    return DensePayload(x.to(torch.float16))


def bf16(x: torch.Tensor, generator: torch.Generator) -> Payload:
    """bfloat16 (float32's exponent, 8-bit mantissa): relative error at most ``2^-8``,
    ``delta >= 1 - 2^-16``; float32's whole range."""
    return DensePayload(x.to(torch.bfloat16))


def top_k(x: torch.Tensor, generator: torch.Generator, *, ratio: float = 0.01) -> Payload:
    """The ``k = ceil(ratio * d)`` coordinates of largest magnitude (Stich et al. 2018).

    ``||C(x) - x||^2 <= (1 - k/d) ||x||^2``: ``delta = k / d``. Deterministic; ties
    broken by ``torch.topk``. Indices are sent in increasing order.
    """
    _check_ratio(ratio)
    k = _count(x.numel(), ratio)
    idx = torch.topk(x.abs(), k, sorted=False).indices.sort().values
    return SparsePayload(x.numel(), idx.to(torch.int32), x[idx].to(torch.float32))


def random_k(
    x: torch.Tensor, generator: torch.Generator, *, ratio: float = 0.01, scaled: bool = False
) -> Payload:
    """``k = ceil(ratio * d)`` coordinates drawn uniformly without replacement.

    Unscaled (default): ``E||C(x) - x||^2 = (1 - k/d) ||x||^2``, ``delta = k / d``.
    ``scaled = true`` multiplies the values by ``d / k``: unbiased, with
    ``E||C(x) - x||^2 = (d/k - 1) ||x||^2`` (not a contraction).
    """
    _check_ratio(ratio)
    d = x.numel()
    k = _count(d, ratio)
    idx = torch.randperm(d, generator=generator)[:k].sort().values
    values = x[idx].to(torch.float32)
    if scaled:
        values = values * (d / k)
    return SparsePayload(d, idx.to(torch.int32), values)


def _blocks(x: torch.Tensor, block: int) -> torch.Tensor:
    """``x`` zero-padded to a multiple of ``block``, as ``(blocks, block)``."""
    d = x.numel()
    nb = math.ceil(d / block)
    padded = torch.zeros(nb * block, dtype=torch.float32)
    padded[:d] = x
    return padded.reshape(nb, block)


def _check_block(block: int) -> None:
    if block < 1:
        raise ConfigError(f"compression.params.block: must be >= 1, got {block}")


def qsgd(
    x: torch.Tensor,
    generator: torch.Generator,
    *,
    levels: int = 16,
    block: int = 512,
    rescale: bool = False,
) -> Payload:
    """QSGD (Alistarh et al., NeurIPS 2017) with ``s = levels``, per bucket of ``block``.

    Per bucket ``v``: ``Q(v)_j = ||v|| sign(v_j) xi_j / s`` with ``l = floor(s |v_j| / ||v||)``
    and ``xi_j = l + 1`` with probability ``s |v_j| / ||v|| - l``, else ``l`` (stochastic
    rounding): unbiased, ``E||Q(v) - v||^2 <= min(block / s^2, sqrt(block) / s) ||v||^2``.
    The paper's experiments bucket too (512 coordinates). On the wire: int8 codes
    ``sign * xi`` (``|code| <= s <= 127``) and one float32 scale ``||v|| / s`` per bucket.
    ``rescale = true`` divides the scales by ``tau = 1 + min(block / s^2, sqrt(block) / s)``,
    the biased delta-contraction with ``delta = 1 / tau`` that CHOCO-SGD's analysis uses
    (Koloskova et al. 2019, their "qsgd_s").
    """
    if not 1 <= levels <= MAX_LEVELS:
        raise ConfigError(f"compression.params.levels: must be in [1, {MAX_LEVELS}], got {levels}")
    _check_block(block)
    d = x.numel()
    v = _blocks(x.to(torch.float32), block)
    norm = torch.linalg.vector_norm(v, dim=1, keepdim=True)
    safe = torch.where(norm > 0, norm, torch.ones_like(norm))
    level = (v.abs() / safe * levels).clamp(max=levels)
    low = level.floor()
    up = torch.rand(v.shape, generator=generator) < (level - low)
    xi = (low + up.to(torch.float32)).clamp(max=levels)
    codes = (torch.sign(v) * xi).reshape(-1)[:d].to(torch.int8)
    scales = norm.reshape(-1) / levels
    if rescale:
        scales = scales / (1.0 + min(block / levels**2, math.sqrt(block) / levels))
    return QuantPayload(block, levels, scales.to(torch.float32), codes)


def int8(x: torch.Tensor, generator: torch.Generator, *, block: int = 256) -> Payload:
    """Per-block absmax int8 (as in LLM.int8 / bitsandbytes' blockwise quantization):
    ``scale_b = max_j |x_j| / 127`` over the block, ``code_j = round(x_j / scale_b)``.

    Deterministic; per coordinate ``|C(x)_j - x_j| <= scale_b / 2``, so
    ``||C(x) - x||^2 <= block / (4 * 127^2) ||x||^2``: ``delta >= 1 - block / 64516``.
    """
    _check_block(block)
    d = x.numel()
    v = _blocks(x.to(torch.float32), block)
    peak = v.abs().amax(dim=1, keepdim=True)
    scale = peak / MAX_LEVELS
    safe = torch.where(scale > 0, scale, torch.ones_like(scale))
    codes = torch.round(v / safe).clamp(-MAX_LEVELS, MAX_LEVELS).reshape(-1)[:d].to(torch.int8)
    return QuantPayload(block, MAX_LEVELS, scale.reshape(-1).to(torch.float32), codes)


COMPRESSORS: Registry[Callable[..., Payload]] = Registry(
    "compressor",
    {
        "none": none,
        "top_k": top_k,
        "random_k": random_k,
        "qsgd": qsgd,
        "int8": int8,
        "fp16": fp16,
        "bf16": bf16,
    },
    key="compression.name",
)


def _delta_sparse(d: int, ratio: float = 0.01, scaled: bool = False) -> float:
    return _count(d, ratio) / d


def _delta_qsgd(d: int, levels: int = 16, block: int = 512, rescale: bool = False) -> float:
    b = min(block, d)
    return 1.0 / (1.0 + min(b / levels**2, math.sqrt(b) / levels))


def _delta_int8(d: int, block: int = 256) -> float:
    return max(0.0, 1.0 - min(block, d) / (4 * MAX_LEVELS**2))


#: Each operator's contraction ``delta`` (its docstring's), from ``d`` and its parameters;
#: for the unbiased QSGD, that of its rescaled form ``delta = 1 / tau``.
CONTRACTIONS: Mapping[str, Callable[..., float]] = {
    "none": lambda d: 1.0,
    "fp16": lambda d: 1.0,
    "bf16": lambda d: 1.0,
    "top_k": _delta_sparse,
    "random_k": _delta_sparse,
    "qsgd": _delta_qsgd,
    "int8": _delta_int8,
}

#: ``gamma = "auto"`` is ``AUTO_GAMMA * sqrt(delta)``: CHOCO's theory asks for a step
#: shrinking with ``delta`` (``O(delta * spectral_gap^2)``, far too small in practice);
#: the paper tunes it per operator. This rule is the one tuned on the digits scenarios
#: (sims/experiments/compression): top-k 1% -> 0.07, int8 -> 0.7.
AUTO_GAMMA = 0.7


@dataclass(frozen=True)
class Compressor:
    """A registered operator with its parameters fixed: ``compress(x, generator)``."""

    name: str
    parameters: Mapping[str, Any]
    fn: Callable[..., Payload]

    def compress(self, x: torch.Tensor, generator: torch.Generator) -> Payload:
        return self.fn(x, generator, **self.parameters)

    def encoding(self, d: int) -> Encoding:
        """What every payload of this operator on ``d`` coordinates looks like."""
        return Encoding.of(self.compress(torch.zeros(d), torch.Generator()))

    @property
    def is_identity(self) -> bool:
        return self.name == "none"

    def delta(self, d: int) -> float:
        """The contraction ``delta`` on ``d`` coordinates (see :data:`CONTRACTIONS`)."""
        return float(CONTRACTIONS[self.name](d, **self.parameters))

    def auto_gamma(self, d: int) -> float:
        """CHOCO's consensus step for ``gamma = "auto"``: ``AUTO_GAMMA * sqrt(delta)``."""
        return min(1.0, AUTO_GAMMA * math.sqrt(self.delta(d)))


def make_compressor(name: str, params: Mapping[str, Any]) -> Compressor:
    """The operator ``name`` with ``params`` checked (ConfigError naming the key)."""
    fn = COMPRESSORS.lookup(name)
    checked = bind_parameters(fn, params, "compression.params")
    comp = Compressor(name, checked, fn)
    comp.encoding(1)  # run the parameter checks once, up front
    return comp
