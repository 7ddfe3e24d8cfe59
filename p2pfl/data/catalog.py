"""The registries ``DATASETS`` and ``PARTITIONERS``, and :func:`load_dataset`."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from p2pfl.data import partition
from p2pfl.data.dataset import Dataset, Splits
from p2pfl.data.digits import digits
from p2pfl.data.mnist import mnist
from p2pfl.data.npz import npz
from p2pfl.data.synthetic import synthetic
from p2pfl.errors import DataError
from p2pfl.registry import Registry

Loader = Callable[..., Splits]
Partitioner = Callable[..., list[np.ndarray]]

DATASETS: Registry[Loader] = Registry(
    "dataset",
    {"digits": digits, "synthetic": synthetic, "npz": npz, "mnist": mnist},
    key="data.source",
)

PARTITIONERS: Registry[Partitioner] = Registry(
    "partitioner",
    {"iid": partition.iid, "dirichlet": partition.dirichlet, "shards": partition.shards},
    key="data.partition",
)


def load_dataset(name: str, params: Mapping[str, Any]) -> tuple[Dataset, Dataset | None]:
    """Load the registered dataset ``name`` with ``params`` (checked, as ``data.params``).

    Returns ``(data, test)``: ``test`` is the source's predefined test split, or
    ``None`` when it has none (then hold one out with
    :func:`~p2pfl.data.split_train_test`).
    """
    loaded = DATASETS.bind(name, params, "data.params")()
    if not isinstance(loaded, Splits):  # a loader bug, not a user error, but say which
        raise DataError(f"dataset loader {name!r} returned {type(loaded).__name__}, not Splits")
    return loaded.train, loaded.test
