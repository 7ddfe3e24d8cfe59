"""Counter-based randomness: the same numbers from (seed, node, round, ...) anywhere.

The simulator draws minibatches for thousands of nodes at once; a node process
draws only its own. Both must get identical samples without sharing a generator,
so randomness is a pure function of integer coordinates: a 32-bit integer hash
(the "lowbias32" mixer) chained over the coordinates. Arithmetic stays below
2**63 in int64 tensors, so the torch and Python versions agree bit for bit.
"""

from __future__ import annotations

import torch

_MASK = 0xFFFFFFFF
_MULT = 0x45D9F3B  # < 2**27, so (x < 2**32) * _MULT < 2**59: no int64 overflow
#: Stream of :func:`round_batch_indices` (uniform minibatches).
BATCH_STREAM = 0x5EED


def _mix_int(x: int) -> int:
    x &= _MASK
    x = (((x >> 16) ^ x) * _MULT) & _MASK
    x = (((x >> 16) ^ x) * _MULT) & _MASK
    return ((x >> 16) ^ x) & _MASK


def _mix_tensor(x: torch.Tensor) -> torch.Tensor:
    x = x & _MASK
    x = (((x >> 16) ^ x) * _MULT) & _MASK
    x = (((x >> 16) ^ x) * _MULT) & _MASK
    return ((x >> 16) ^ x) & _MASK


def derive_seed(*coordinates: int) -> int:
    """A 32-bit seed that depends on every coordinate (seed, node, round, purpose, ...)."""
    h = 0x2545F491
    for c in coordinates:
        h = _mix_int(h ^ (c & _MASK))
    return h


def generator_for(*coordinates: int) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded with :func:`derive_seed` of the coordinates."""
    g = torch.Generator()
    g.manual_seed(derive_seed(*coordinates))
    return g


def batch_indices(
    seed: int,
    nodes: torch.Tensor,
    round_: int,
    step: int,
    batch_size: int,
    shard_sizes: torch.Tensor,
) -> torch.Tensor:
    """``(len(nodes), batch_size)`` indices, uniform with replacement within each node's shard.

    Entry ``[k, b]`` is ``hash(seed, nodes[k], round_, step, b) mod shard_sizes[k]``:
    the same whether computed for one node or for all of them.
    """
    return round_batch_indices(seed, nodes, round_, step + 1, batch_size, shard_sizes, first=step)[
        :, 0
    ]


def round_batch_indices(
    seed: int,
    nodes: torch.Tensor,
    round_: int,
    steps: int,
    batch_size: int,
    shard_sizes: torch.Tensor,
    first: int = 0,
) -> torch.Tensor:
    """``(len(nodes), steps - first, batch_size)``: :func:`batch_indices` of steps ``first..steps-1``.

    One hash pass for all the local steps of a round.
    """
    h = round_hashes(seed, BATCH_STREAM, nodes, round_, steps, batch_size, first)
    return h % shard_sizes.to(torch.int64).reshape(-1, 1, 1)


def round_hashes(
    seed: int,
    stream: int,
    nodes: torch.Tensor,
    round_: int,
    steps: int,
    width: int,
    first: int = 0,
) -> torch.Tensor:
    """``(len(nodes), steps - first, width)`` int64 hashes in ``[0, 2**32)``.

    Entry ``[k, s, b]`` is ``hash(seed, stream, nodes[k], round_, first + s, b)``: it
    depends on its own coordinates only, so one node computes the same entries as a
    batch of all nodes, and a wider call extends a narrower one.
    """
    step_ids = torch.arange(first, steps, dtype=torch.int64) & _MASK
    h = torch.full((1,), derive_seed(seed, stream), dtype=torch.int64)
    h = _mix_tensor(h ^ nodes.to(torch.int64).reshape(-1, 1, 1))
    h = _mix_tensor(h ^ (round_ & _MASK))
    h = _mix_tensor(h ^ step_ids.reshape(1, -1, 1))
    return _mix_tensor(h ^ torch.arange(width, dtype=torch.int64).reshape(1, 1, -1))
