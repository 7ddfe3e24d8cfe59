"""MNIST-format image data (MNIST, Fashion-MNIST, ...) from IDX files in a directory.

Nothing is downloaded: ``path`` must already hold the standard files
``train-images-idx3-ubyte`` and ``train-labels-idx1-ubyte`` (each optionally
gzipped, ``.gz``), and optionally ``t10k-images-idx3-ubyte`` /
``t10k-labels-idx1-ubyte``, which then become the predefined test split.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from p2pfl.data.dataset import Dataset, Splits
from p2pfl.data.idx import read_idx
from p2pfl.errors import DataError


def _find(directory: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):
        if (directory / name).is_file():
            return directory / name
    return None


def _images(file: Path) -> np.ndarray:
    arr = read_idx(file)
    if arr.ndim != 3:
        raise DataError(f"{file}: images must be a 3-D (N, H, W) array, got shape {arr.shape}")
    if arr.dtype == np.uint8:
        return (arr.astype(np.float32) / 255.0)[:, None]
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise DataError(f"{file}: images hold NaN or infinite values")
    return arr.astype(np.float32)[:, None]


def _labels(file: Path) -> np.ndarray:
    arr = read_idx(file)
    if arr.ndim != 1 or arr.dtype.kind not in "iu":
        raise DataError(
            f"{file}: labels must be a 1-D integer array, got {arr.dtype} of shape {arr.shape}"
        )
    if arr.size and int(arr.min()) < 0:
        raise DataError(f"{file}: negative label {int(arr.min())}")
    return arr.astype(np.int64)


def _pair(directory: Path, prefix: str) -> tuple[np.ndarray, np.ndarray] | None:
    images = _find(directory, f"{prefix}-images-idx3-ubyte")
    labels = _find(directory, f"{prefix}-labels-idx1-ubyte")
    if images is None and labels is None:
        return None
    if images is None or labels is None:
        present = images.name if images is not None else labels.name if labels else ""
        lacking = "labels-idx1" if labels is None else "images-idx3"
        raise DataError(f"{directory}: found {present} but not {prefix}-{lacking}-ubyte[.gz]")
    x, y = _images(images), _labels(labels)
    if x.shape[0] != y.shape[0]:
        raise DataError(
            f"{directory}: {images.name} holds {x.shape[0]} images but "
            f"{labels.name} holds {y.shape[0]} labels"
        )
    if x.shape[0] == 0:
        raise DataError(f"{directory}: {images.name} holds no images")
    return x, y


def mnist(*, path: str) -> Splits:
    """Load the IDX files in the directory ``path``; pixels scaled to ``[0, 1]``.

    Images become ``(N, 1, H, W)`` float32 (28x28 for MNIST); uint8 pixels are
    divided by 255. ``num_classes`` is ``max(label) + 1`` over both splits (10 for
    MNIST). The ``t10k`` files, when present, are the predefined test set.
    """
    directory = Path(path)
    if not directory.is_dir():
        raise DataError(f"MNIST directory not found: {directory}")
    train = _pair(directory, "train")
    if train is None:
        raise DataError(
            f"{directory}: no train-images-idx3-ubyte[.gz] / train-labels-idx1-ubyte[.gz]"
        )
    test = _pair(directory, "t10k")
    if test is not None and test[0].shape[1:] != train[0].shape[1:]:
        raise DataError(
            f"{directory}: test images are {test[0].shape[2:]}, training images {train[0].shape[2:]}"
        )
    classes = max(int(train[1].max()), int(test[1].max()) if test is not None else 0) + 1
    return Splits(
        Dataset.from_arrays(*train, classes, "mnist"),
        Dataset.from_arrays(*test, classes, "mnist") if test is not None else None,
    )
