"""The :class:`Dataset` value object, predefined train/test :class:`Splits`, and
:func:`split_train_test`.

A dataset is two tensors and a class count, checked once when it is built: features
are finite float32 ``(N, *input_shape)``, labels int64 ``(N,)`` in ``[0, num_classes)``.
Everything downstream (partitioners, local training, evaluation) relies on those
invariants instead of re-checking them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from p2pfl.errors import DataError


@dataclass(frozen=True, eq=False)  # eq=False: tensors have no truth value for ``==``
class Dataset:
    """Labelled examples: ``x`` float32 ``(N, *input_shape)``, ``y`` int64 ``(N,)``.

    Raises :class:`~p2pfl.errors.DataError` naming the problem when the tensors have
    the wrong dtype or rank, disagree in length, hold a label outside
    ``[0, num_classes)``, or hold a non-finite feature.
    """

    x: torch.Tensor
    y: torch.Tensor
    num_classes: int
    name: str

    def __post_init__(self) -> None:
        where = f"dataset {self.name!r}"
        if not isinstance(self.x, torch.Tensor) or not isinstance(self.y, torch.Tensor):
            raise DataError(f"{where}: x and y must be torch tensors")
        if self.x.dtype != torch.float32:
            raise DataError(f"{where}: features must be float32, got {self.x.dtype}")
        if self.y.dtype != torch.int64:
            raise DataError(f"{where}: labels must be int64, got {self.y.dtype}")
        if self.x.ndim < 2:
            raise DataError(
                f"{where}: features must have shape (N, *input_shape), got {tuple(self.x.shape)}"
            )
        if self.y.ndim != 1:
            raise DataError(f"{where}: labels must have shape (N,), got {tuple(self.y.shape)}")
        if self.x.shape[0] != self.y.shape[0]:
            raise DataError(f"{where}: {self.x.shape[0]} feature rows but {self.y.shape[0]} labels")
        if isinstance(self.num_classes, bool) or not isinstance(self.num_classes, int):
            raise DataError(f"{where}: num_classes must be an integer, got {self.num_classes!r}")
        if self.num_classes < 2:
            raise DataError(f"{where}: needs at least 2 classes, got {self.num_classes}")
        if self.y.numel() > 0:
            lo, hi = int(self.y.min()), int(self.y.max())
            if lo < 0 or hi >= self.num_classes:
                bad = lo if lo < 0 else hi
                raise DataError(
                    f"{where}: label {bad} outside [0, {self.num_classes}) "
                    f"(num_classes={self.num_classes})"
                )
        if not bool(torch.isfinite(self.x).all()):
            count = int((~torch.isfinite(self.x)).sum())
            raise DataError(f"{where}: {count} feature value(s) are NaN or infinite")

    @classmethod
    def from_arrays(
        cls, x: np.ndarray | torch.Tensor, y: np.ndarray | torch.Tensor, num_classes: int, name: str
    ) -> Dataset:
        """Build a dataset from numeric arrays, converting to float32 features and int64 labels."""
        return cls(
            torch.as_tensor(np.asarray(x), dtype=torch.float32).contiguous(),
            torch.as_tensor(np.asarray(y), dtype=torch.int64).contiguous(),
            num_classes,
            name,
        )

    def __len__(self) -> int:
        return int(self.y.shape[0])

    @property
    def input_shape(self) -> tuple[int, ...]:
        """The shape of one example (``x.shape[1:]``)."""
        return tuple(int(s) for s in self.x.shape[1:])

    def class_counts(self) -> np.ndarray:
        """``(num_classes,)`` number of examples of each class."""
        return np.bincount(self.y.numpy(), minlength=self.num_classes)

    def subset(self, indices: np.ndarray | torch.Tensor | Sequence[int]) -> Dataset:
        """The examples at ``indices`` (in that order), same ``num_classes`` and ``name``."""
        index = torch.as_tensor(np.asarray(indices), dtype=torch.int64).reshape(-1)
        if index.numel() and (int(index.min()) < -len(self) or int(index.max()) >= len(self)):
            raise DataError(
                f"dataset {self.name!r}: subset index out of range for {len(self)} examples"
            )
        return Dataset(self.x[index], self.y[index], self.num_classes, self.name)


@dataclass(frozen=True, eq=False)
class Splits:
    """What a loader returns: the training data and, when the source defines one, its test set.

    ``test`` is ``None`` when the source has no predefined test split; the caller then
    holds one out with :func:`split_train_test`.
    """

    train: Dataset
    test: Dataset | None = None

    def __post_init__(self) -> None:
        if self.test is None:
            return
        if self.test.input_shape != self.train.input_shape:
            raise DataError(
                f"dataset {self.train.name!r}: test examples have shape {self.test.input_shape}, "
                f"training examples {self.train.input_shape}"
            )
        if self.test.num_classes != self.train.num_classes:
            raise DataError(
                f"dataset {self.train.name!r}: test set has {self.test.num_classes} classes, "
                f"training set {self.train.num_classes}"
            )


def _largest_remainder(quotas: np.ndarray, total: int) -> np.ndarray:
    """Integers summing to ``total`` that round ``quotas`` (which sum to ``total``) fairly.

    Hamilton's method: floor every quota, then give the leftover units to the largest
    fractional parts (ties to the lower index, so the result is deterministic).
    """
    base = np.floor(quotas).astype(np.int64)
    left = total - int(base.sum())
    if left > 0:
        order = np.argsort(-(quotas - base), kind="stable")
        base[order[:left]] += 1
    return base


def split_train_test(ds: Dataset, test_fraction: float, seed: int) -> tuple[Dataset, Dataset]:
    """Stratified, deterministic split into ``(train, test)``.

    The test set holds ``round(N * test_fraction)`` examples (at least one, and at least
    one left for training), shared out between classes in proportion to their sizes by
    the largest-remainder rule; which examples of a class go to the test set is a
    permutation drawn from ``numpy.random.default_rng(seed)``. Both parts keep the
    original order of the examples.
    """
    if isinstance(test_fraction, bool) or not 0.0 < float(test_fraction) < 1.0:
        raise DataError(f"test_fraction must be in (0, 1), got {test_fraction!r}")
    n = len(ds)
    if n < 2:
        raise DataError(f"dataset {ds.name!r}: cannot split {n} example(s) into train and test")
    total = min(max(round(n * float(test_fraction)), 1), n - 1)
    labels = ds.y.numpy()
    counts = np.bincount(labels, minlength=ds.num_classes)
    per_class = _largest_remainder(counts * (total / n), total)
    rng = np.random.default_rng(seed)
    test_mask = np.zeros(n, dtype=bool)
    for c in np.flatnonzero(counts):
        members = np.flatnonzero(labels == c)
        test_mask[rng.permutation(members)[: per_class[c]]] = True
    return ds.subset(np.flatnonzero(~test_mask)), ds.subset(np.flatnonzero(test_mask))
