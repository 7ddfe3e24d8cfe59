"""Dataset validation, subset, split_train_test, the DATASETS registry and load_dataset."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import p2pfl.data as data
from p2pfl.data import DATASETS, Dataset, Splits, load_dataset, split_train_test
from p2pfl.errors import ConfigError, DataError, UnknownNameError

pytestmark = pytest.mark.timeout(30)


def make(n: int = 10, classes: int = 3) -> Dataset:
    x = torch.arange(n * 4, dtype=torch.float32).reshape(n, 2, 2)
    y = torch.arange(n) % classes
    return Dataset(x, y, classes, "toy")


def test_public_api_is_all() -> None:
    assert sorted(data.__all__) == sorted(
        [
            "DATASETS",
            "PARTITIONERS",
            "Dataset",
            "Loader",
            "Partitioner",
            "Splits",
            "heterogeneity",
            "load_dataset",
            "partition_summary",
            "read_idx",
            "split_train_test",
            "summary_table",
            "write_idx",
        ]
    )
    for name in data.__all__:
        assert hasattr(data, name)


def test_dataset_properties_and_subset() -> None:
    ds = make()
    assert len(ds) == 10
    assert ds.input_shape == (2, 2)
    assert ds.class_counts().tolist() == [4, 3, 3]
    sub = ds.subset(np.array([3, 1]))
    assert len(sub) == 2
    assert torch.equal(sub.x[0], ds.x[3])
    assert sub.y.tolist() == [0, 1]
    assert sub.num_classes == 3 and sub.name == "toy"


@pytest.mark.parametrize(
    ("x", "y", "classes", "match"),
    [
        (torch.zeros(3, 2, dtype=torch.float64), torch.zeros(3, dtype=torch.int64), 2, "float32"),
        (torch.zeros(3, 2), torch.zeros(3, dtype=torch.int32), 2, "int64"),
        (torch.zeros(3), torch.zeros(3, dtype=torch.int64), 2, "shape"),
        (torch.zeros(3, 2), torch.zeros(3, 1, dtype=torch.int64), 2, "shape"),
        (torch.zeros(3, 2), torch.zeros(4, dtype=torch.int64), 2, "3 feature rows but 4 labels"),
        (torch.zeros(3, 2), torch.tensor([0, 1, 2]), 2, "label 2 outside"),
        (torch.zeros(3, 2), torch.tensor([0, -1, 1]), 2, "label -1 outside"),
        (torch.tensor([[0.0], [float("nan")], [1.0]]), torch.zeros(3, dtype=torch.int64), 2, "NaN"),
        (
            torch.tensor([[0.0], [float("inf")], [1.0]]),
            torch.zeros(3, dtype=torch.int64),
            2,
            "NaN or infinite",
        ),
        (torch.zeros(3, 2), torch.zeros(3, dtype=torch.int64), 1, "at least 2 classes"),
    ],
)
def test_dataset_validation(x: torch.Tensor, y: torch.Tensor, classes: int, match: str) -> None:
    with pytest.raises(DataError, match=match):
        Dataset(x, y, classes, "bad")


def test_subset_out_of_range() -> None:
    with pytest.raises(DataError, match="out of range"):
        make().subset([10])


def test_splits_must_agree() -> None:
    with pytest.raises(DataError, match="shape"):
        Splits(make(), Dataset(torch.zeros(2, 4), torch.zeros(2, dtype=torch.int64), 3, "t"))
    with pytest.raises(DataError, match="classes"):
        Splits(make(), Dataset(torch.zeros(2, 2, 2), torch.zeros(2, dtype=torch.int64), 4, "t"))


def test_split_is_stratified_disjoint_and_deterministic() -> None:
    x = torch.arange(200, dtype=torch.float32).reshape(200, 1)  # x encodes the index
    y = torch.tensor([0] * 100 + [1] * 60 + [2] * 40)
    ds = Dataset(x, y, 3, "strat")
    train, test = split_train_test(ds, 0.25, seed=7)
    assert len(test) == 50 and len(train) == 150
    assert test.class_counts().tolist() == [25, 15, 10]
    ids_train = set(train.x[:, 0].long().tolist())
    ids_test = set(test.x[:, 0].long().tolist())
    assert not ids_train & ids_test and len(ids_train | ids_test) == 200
    again = split_train_test(ds, 0.25, seed=7)[1]
    assert torch.equal(again.x, test.x)
    other = split_train_test(ds, 0.25, seed=8)[1]
    assert not torch.equal(other.x, test.x)


def test_split_keeps_both_sides_non_empty() -> None:
    train, test = split_train_test(make(n=3), 0.01, seed=0)
    assert len(test) == 1 and len(train) == 2


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.5, 2.0])
def test_split_rejects_bad_fraction(fraction: float) -> None:
    with pytest.raises(DataError, match="test_fraction"):
        split_train_test(make(), fraction, seed=0)


def test_split_rejects_single_example() -> None:
    with pytest.raises(DataError, match="cannot split 1"):
        split_train_test(make(n=1), 0.5, seed=0)


def test_registry_names_and_unknown() -> None:
    assert DATASETS.names() == ["digits", "mnist", "npz", "synthetic"]
    with pytest.raises(UnknownNameError, match="valid datasets: digits, mnist, npz, synthetic"):
        load_dataset("cifar", {})


def test_load_dataset_checks_parameters() -> None:
    with pytest.raises(ConfigError, match=r"data.params.n_sample: unknown parameter"):
        load_dataset("synthetic", {"n_sample": 10})
    with pytest.raises(ConfigError, match=r"data.params.n_samples: expected an integer"):
        load_dataset("synthetic", {"n_samples": "10"})
    with pytest.raises(ConfigError, match="missing required parameter"):
        load_dataset("npz", {})
