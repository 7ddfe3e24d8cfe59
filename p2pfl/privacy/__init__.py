"""Differentially private local training: DP-SGD's mechanism and its accounting.

:mod:`p2pfl.privacy.mechanism` holds the sampling and the noise (pure functions of the
seed, shared by the simulator and the node); :mod:`p2pfl.privacy.accounting` turns a
run into per-node ``(epsilon, delta)`` with Opacus's RDP accountant (imported only
when a scenario asks for DP).
"""

from p2pfl.privacy.mechanism import (
    DPSpec,
    NoiseStreams,
    poisson_batches,
    sample_rates,
    seeded_noise,
)

__all__ = ["DPSpec", "NoiseStreams", "poisson_batches", "sample_rates", "seeded_noise"]
