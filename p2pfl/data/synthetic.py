"""Seeded Gaussian class blobs: a dataset of any size, for scale tests and quick runs."""

from __future__ import annotations

import math

import numpy as np

from p2pfl.data.dataset import Dataset, Splits
from p2pfl.errors import ConfigError


def synthetic(
    *,
    n_samples: int = 2000,
    n_features: int = 20,
    n_classes: int = 4,
    seed: int = 0,
    separation: float = 2.0,
) -> Splits:
    """Gaussian blobs, one per class, drawn from ``numpy.random.default_rng(seed)``.

    Class means are ``mu_c = separation * z_c / sqrt(n_features)`` with
    ``z_c ~ N(0, I)``; an example of class ``y`` is ``x = mu_y + eps`` with
    ``eps ~ N(0, I)``. Two class means are then about ``separation * sqrt(2)`` noise
    standard deviations apart, whatever ``n_features`` is: larger ``separation``
    makes the task easier. Labels are balanced (``i mod n_classes``, shuffled).
    Features have shape ``(n_samples, n_features)``; there is no predefined test split.
    """
    if n_classes < 2:
        raise ConfigError(f"data.params.n_classes: must be >= 2, got {n_classes}")
    if n_samples < n_classes:
        raise ConfigError(
            f"data.params.n_samples: must be >= n_classes ({n_classes}), got {n_samples}"
        )
    if n_features < 1:
        raise ConfigError(f"data.params.n_features: must be >= 1, got {n_features}")
    if not (separation >= 0.0 and math.isfinite(separation)):
        raise ConfigError(f"data.params.separation: must be finite and >= 0, got {separation}")
    rng = np.random.default_rng(seed)
    means = rng.standard_normal((n_classes, n_features)) * (separation / math.sqrt(n_features))
    y = rng.permutation(np.arange(n_samples) % n_classes)
    x = means[y] + rng.standard_normal((n_samples, n_features))
    return Splits(Dataset.from_arrays(x.astype(np.float32), y, n_classes, "synthetic"))
