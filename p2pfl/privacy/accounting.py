"""Privacy accounting for DP-SGD with Opacus's RDP accountant (``pip install 'p2pfl[privacy]'``).

Each DP-SGD step is a sampled Gaussian mechanism: Poisson sampling with rate
``q``, sensitivity ``C`` (the clip norm), noise ``N(0, sigma^2 C^2)``. Its Renyi DP
at order ``alpha`` (Mironov, Talwar and Zhang 2019) composes additively over the
``T`` steps of a run, ``RDP_total(alpha) = T * RDP_step(alpha)``, and converts to
``(epsilon, delta)``-DP by minimising over the orders. Opacus's
:class:`~opacus.accountants.RDPAccountant` does exactly this; we call it rather
than own formulas (docs/security.md says why this library).

Per node: shards differ in size, so sampling rates (``q_i = min(1, B / n_i)``) and
epsilons differ; a run reports every honest node's epsilon and their maximum.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Iterable, Mapping
from typing import Any

import torch

from p2pfl.config import PrivacyConfig
from p2pfl.errors import ConfigError
from p2pfl.privacy.mechanism import DPSpec, sample_rates

INSTALL_HINT = "privacy.mechanism = 'dp_sgd' needs Opacus: pip install 'p2pfl[privacy]'"


def _opacus() -> Any:
    try:
        from opacus import accountants
        from opacus.accountants import utils
    except ImportError:  # pragma: no cover - depends on the environment
        raise ConfigError(INSTALL_HINT) from None
    return accountants, utils


@functools.lru_cache(maxsize=1024)
def epsilon(noise_multiplier: float, sample_rate: float, steps: int, delta: float) -> float:
    """Epsilon after ``steps`` DP-SGD steps with rate ``sample_rate`` (Opacus RDP accountant).

    Zero steps spend nothing (0.0). Cached: one call costs about a second (the RDP of
    ~150 orders), and nodes with shards of the same size share their value.
    """
    if steps <= 0:
        return 0.0
    accountants, _ = _opacus()
    acc = accountants.RDPAccountant()
    acc.history = [(noise_multiplier, sample_rate, steps)]
    return float(acc.get_epsilon(delta=delta))


def solve_noise_multiplier(
    target_epsilon: float, delta: float, sample_rate: float, steps: int
) -> float:
    """The smallest noise multiplier (to ``1%`` of the target) with epsilon <= ``target_epsilon``."""
    _, utils = _opacus()
    try:
        with warnings.catch_warnings():
            # its search tries noise levels far below the answer, whose best RDP order is
            # the largest one tried; that says nothing about the noise it returns
            warnings.filterwarnings("ignore", "Optimal order is the largest alpha")
            sigma = utils.get_noise_multiplier(
                target_epsilon=target_epsilon,
                target_delta=delta,
                sample_rate=sample_rate,
                steps=steps,
                accountant="rdp",
                epsilon_tolerance=0.01 * target_epsilon,
            )
        return float(sigma)
    except ValueError as exc:
        raise ConfigError(f"privacy.target_epsilon: {exc}") from None


def default_delta(shard_sizes: torch.Tensor) -> float:
    """``1 / (largest shard)`` rounded down to a power of ten (so below ``1 / n_i`` for every node)."""
    return 10.0 ** math.floor(-math.log10(int(shard_sizes.max())))


def resolve(
    cfg: PrivacyConfig, shard_sizes: torch.Tensor, batch_size: int, steps: int
) -> DPSpec | None:
    """The run's :class:`DPSpec` (None without a mechanism); ``steps`` = rounds x local steps.

    With ``target_epsilon`` the noise multiplier is solved for the highest sampling
    rate (the smallest shard), so every node's epsilon after ``steps`` is at most
    the target.
    """
    if cfg.mechanism == "none":
        return None
    delta = cfg.delta if cfg.delta is not None else default_delta(shard_sizes)
    if cfg.noise_multiplier is not None:
        sigma = cfg.noise_multiplier
    else:
        assert cfg.target_epsilon is not None  # PrivacyConfig checks one of them is set
        q = float(sample_rates(batch_size, shard_sizes).max())
        sigma = solve_noise_multiplier(cfg.target_epsilon, delta, q, steps)
    return DPSpec(clip_norm=cfg.clip_norm, noise_multiplier=sigma, delta=delta)


def privacy_report(
    spec: DPSpec,
    batch_size: int,
    shard_sizes: torch.Tensor,
    steps: Mapping[int, int],
    honest: Iterable[int],
) -> dict[str, Any]:
    """``summary.json``'s privacy fields for nodes that ran ``steps[i]`` DP-SGD steps.

    ``epsilon`` is the maximum over the honest nodes, ``epsilon_per_node`` maps each
    honest node (as a string) to its own, ``delta`` and ``noise_multiplier`` are the
    run's (the latter solved when ``target_epsilon`` was given).
    """
    rates = sample_rates(batch_size, shard_sizes).tolist()
    per_node = {
        str(i): epsilon(spec.noise_multiplier, rates[i], steps.get(i, 0), spec.delta)
        for i in sorted(honest)
    }
    return {
        "epsilon": max(per_node.values(), default=0.0),
        "epsilon_per_node": per_node,
        "delta": spec.delta,
        "noise_multiplier": spec.noise_multiplier,
        "clip_norm": spec.clip_norm,
    }
