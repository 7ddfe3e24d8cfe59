"""DP-SGD's randomness (Abadi et al., CCS 2016): Poisson-sampled batches and seeded noise.

One DP-SGD step at node ``i`` with shard size ``n_i``: every example of the shard
joins the batch independently with probability ``q_i = min(1, B / n_i)`` (``B`` =
``training.batch_size``); each example's gradient is clipped,
``g_e <- g_e * min(1, C / ||g_e||)``; the step direction is

    (sum_e g_e + N(0, sigma^2 C^2 I)) / (q_i * n_i)

(:func:`p2pfl.learning.local_steps`). The privacy analysis (:mod:`p2pfl.privacy.accounting`)
needs exactly this sampling (Poisson, not a fixed-size batch) and Gaussian noise.

Both are pure functions of ``(seed, node, round, step)``, like the minibatches of
:mod:`p2pfl.seeding`, so the simulator (every node at once) and a node process (its
own row) draw the same batches and the same noise:

* :func:`poisson_batches`: example ``b`` of node ``k`` is in step ``s``'s batch when
  ``hash(seed, stream, k, round, s, b) < q_k * 2**32``;
* :func:`seeded_noise`: each node's standard normal draws come from its own
  ``torch.Generator`` seeded with ``(seed, node, round, NOISE_STREAM)``.

The noise of a real deployment must come from a cryptographically secure generator
(Opacus's ``secure_mode``); seeded noise is what makes runs reproducible and the
simulator comparable with the node, and is right for experiments only (see
docs/security.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from p2pfl.seeding import generator_for, round_hashes

SAMPLE_STREAM = 0xD95A
NOISE_STREAM = 0xD901


@dataclass(frozen=True)
class DPSpec:
    """A resolved DP-SGD configuration: clip norm ``C``, noise multiplier ``sigma``, ``delta``."""

    clip_norm: float
    noise_multiplier: float
    delta: float


def sample_rates(batch_size: int, shard_sizes: torch.Tensor) -> torch.Tensor:
    """``(N,)`` float64 Poisson sampling rates ``q_i = min(1, batch_size / n_i)``."""
    return (batch_size / shard_sizes.to(torch.float64)).clamp(max=1.0)


def poisson_batches(
    seed: int,
    nodes: torch.Tensor,
    round_: int,
    steps: int,
    rates: torch.Tensor,
    shard_sizes: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """This round's Poisson batches: ``(index, valid)``, both ``(len(nodes), steps, width)``.

    ``index[k, s, :]`` lists, in increasing order, the shard positions of node
    ``nodes[k]`` sampled for step ``s`` (each with probability ``rates[k]``), padded
    with position 0 where ``valid`` is False; ``width`` is the largest batch drawn
    (at least 1). The sampled sets do not depend on which other nodes are in the call.
    """
    width = int(shard_sizes.max())
    h = round_hashes(seed, SAMPLE_STREAM, nodes, round_, steps, width)
    # q * 2**32 in float64 is exact enough: u = h / 2**32 < q  <=>  h < q * 2**32
    threshold = (rates.to(torch.float64) * 2.0**32).reshape(-1, 1, 1)
    positions = torch.arange(width, dtype=torch.int64)
    chosen = (h.to(torch.float64) < threshold) & (
        positions < shard_sizes.to(torch.int64).reshape(-1, 1, 1)
    )
    batch = max(1, int(chosen.sum(-1).max()))
    # Chosen positions first, in increasing order (a stable sort of "not chosen").
    order = torch.sort((~chosen).to(torch.uint8), dim=-1, stable=True).indices[..., :batch]
    valid = chosen.gather(-1, order)
    return torch.where(valid, order, 0), valid


class NoiseStreams:
    """Each node's Gaussian noise stream for one round: ``next(d)`` draws one step's noise.

    Row ``k`` comes from node ``nodes[k]``'s own generator, seeded with
    ``(seed, node, round, NOISE_STREAM)``, so a node alone and a batch of nodes draw
    identical rows.
    """

    def __init__(self, seed: int, nodes: torch.Tensor, round_: int) -> None:
        self._generators = [generator_for(seed, int(i), round_, NOISE_STREAM) for i in nodes]

    def next(self, d: int) -> torch.Tensor:
        """``(len(nodes), d)`` float32 standard normal draws, the next step's of each node."""
        return torch.stack([torch.randn(d, generator=g) for g in self._generators])


def seeded_noise(seed: int, node: int, round_: int, steps: int, d: int) -> torch.Tensor:
    """``(steps, d)``: node ``node``'s standard normal noise for every local step of a round."""
    streams = NoiseStreams(seed, torch.tensor([node]), round_)
    return torch.cat([streams.next(d) for _ in range(steps)])
