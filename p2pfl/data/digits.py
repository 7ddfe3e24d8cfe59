"""The 8x8 handwritten digits that ship inside scikit-learn (no download)."""

from __future__ import annotations

import numpy as np
from sklearn.datasets import load_digits

from p2pfl.data.dataset import Dataset, Splits


def digits() -> Splits:
    """scikit-learn's embedded UCI digits: 1,797 images of 8x8 pixels, 10 classes.

    Pixels (integers 0..16) are divided by 16 into ``[0, 1]`` and shaped
    ``(N, 1, 8, 8)``, so convolutional models take them as they are and
    fully-connected ones flatten them. There is no predefined test split.
    """
    raw = load_digits()
    x = (np.asarray(raw.data, dtype=np.float32) / 16.0).reshape(-1, 1, 8, 8)
    y = np.asarray(raw.target, dtype=np.int64)
    return Splits(Dataset.from_arrays(x, y, 10, "digits"))
