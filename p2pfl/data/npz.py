"""Arrays from a NumPy ``.npz`` archive, read without ever unpickling.

The archive holds ``x`` (features, ``(N, ...)``) and ``y`` (integer labels,
``(N,)``), and optionally ``x_test`` / ``y_test`` as a predefined test split.
``numpy.load(..., allow_pickle=False)`` refuses object arrays, which is what
keeps a hostile file from running code; that refusal and every other defect
(missing file, corrupt archive, missing key, wrong dtype, mismatched lengths)
becomes a :class:`~p2pfl.errors.DataError` that names the file and the key.
"""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path

import numpy as np

from p2pfl.data.dataset import Dataset, Splits
from p2pfl.errors import DataError

# What numpy and zipfile raise for a damaged archive or member.
_READ_ERRORS = (OSError, EOFError, ValueError, zipfile.BadZipFile, zlib.error)


def _member(archive: np.lib.npyio.NpzFile, key: str, path: Path) -> np.ndarray:
    try:
        arr = archive[key]
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise DataError(
                f"{path}: key {key!r} holds an object array; p2pfl loads numeric arrays only "
                "(it never unpickles data)"
            ) from None
        raise DataError(f"{path}: key {key!r} is corrupt: {exc}") from None
    except _READ_ERRORS as exc:
        raise DataError(f"{path}: key {key!r} is corrupt: {exc}") from None
    if arr.dtype == object:
        raise DataError(f"{path}: key {key!r} holds an object array")
    return arr


def _features(arr: np.ndarray, key: str, path: Path) -> np.ndarray:
    if arr.dtype.kind not in "biuf":
        raise DataError(f"{path}: key {key!r} must be numeric, got dtype {arr.dtype}")
    if arr.ndim < 2:
        raise DataError(
            f"{path}: key {key!r} must have shape (N, *input_shape), got {arr.shape}; "
            "reshape one-feature data to (N, 1)"
        )
    if not np.isfinite(arr).all():
        raise DataError(f"{path}: key {key!r} holds NaN or infinite values")
    return arr.astype(np.float32)


def _labels(arr: np.ndarray, key: str, path: Path) -> np.ndarray:
    if arr.dtype.kind not in "iu":
        raise DataError(f"{path}: key {key!r} must hold integer labels, got dtype {arr.dtype}")
    if arr.ndim != 1:
        raise DataError(f"{path}: key {key!r} must have shape (N,), got {arr.shape}")
    if arr.size and int(arr.min()) < 0:
        raise DataError(f"{path}: key {key!r} holds a negative label ({int(arr.min())})")
    return arr.astype(np.int64)


def _pair(
    archive: np.lib.npyio.NpzFile, xk: str, yk: str, path: Path
) -> tuple[np.ndarray, np.ndarray]:
    x = _features(_member(archive, xk, path), xk, path)
    y = _labels(_member(archive, yk, path), yk, path)
    if x.shape[0] != y.shape[0]:
        raise DataError(f"{path}: {xk!r} has {x.shape[0]} rows but {yk!r} has {y.shape[0]}")
    if x.shape[0] == 0:
        raise DataError(f"{path}: {xk!r} holds no examples")
    return x, y


def npz(*, path: str, num_classes: int = 0) -> Splits:
    """Load ``x``/``y`` (and optional ``x_test``/``y_test``) from the ``.npz`` at ``path``.

    Features are converted to float32 as they are (no scaling); labels must be
    non-negative integers. ``num_classes = 0`` infers ``max(y) + 1`` over both
    splits; a positive value fixes it (it must exceed every label).
    """
    if num_classes < 0:
        raise DataError(f"data.params.num_classes: must be >= 0, got {num_classes}")
    file = Path(path)
    if not file.is_file():
        raise DataError(f"npz dataset not found: {file}")
    try:
        archive = np.load(file, allow_pickle=False)
    except ValueError as exc:
        # numpy treats anything that is neither a zip nor a .npy as a pickle, and refuses it.
        raise DataError(f"{file}: not a NumPy .npz archive ({exc})") from None
    except _READ_ERRORS as exc:
        raise DataError(f"{file}: unreadable .npz archive ({exc})") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise DataError(f"{file}: a single .npy array, not an .npz archive with keys 'x' and 'y'")
    with archive:
        keys = set(archive.files)
        missing = [k for k in ("x", "y") if k not in keys]
        if missing:
            raise DataError(
                f"{file}: missing key(s) {', '.join(map(repr, missing))}; "
                f"found: {', '.join(sorted(keys)) or '(none)'}"
            )
        has_test = {"x_test", "y_test"} & keys
        if has_test and has_test != {"x_test", "y_test"}:
            raise DataError(f"{file}: 'x_test' and 'y_test' must be given together")
        x, y = _pair(archive, "x", "y", file)
        test = _pair(archive, "x_test", "y_test", file) if has_test else None
    if test is not None and test[0].shape[1:] != x.shape[1:]:
        raise DataError(
            f"{file}: 'x_test' examples have shape {test[0].shape[1:]}, 'x' {x.shape[1:]}"
        )
    top = max(int(y.max()), int(test[1].max()) if test is not None else 0)
    if num_classes and top >= num_classes:
        raise DataError(f"{file}: label {top} but num_classes = {num_classes}")
    classes = num_classes or top + 1
    name = file.stem
    return Splits(
        Dataset.from_arrays(x, y, classes, name),
        Dataset.from_arrays(*test, classes, name) if test is not None else None,
    )
