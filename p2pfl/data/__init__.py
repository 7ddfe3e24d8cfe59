"""Datasets, train/test splits and partitioners.

Loaders (:data:`DATASETS`), ``load(*, ...) -> Splits``: ``digits`` (scikit-learn's
embedded 8x8 digits), ``synthetic`` (seeded Gaussian blobs), ``npz`` (a NumPy
archive, never unpickled) and ``mnist`` (IDX files in a directory). Use
:func:`load_dataset` to get ``(data, predefined_test_or_None)`` and
:func:`split_train_test` for a stratified hold-out.

Partitioners (:data:`PARTITIONERS`), ``partition(labels, n_nodes, *, seed=0, ...)
-> list[np.ndarray]``: ``iid``, ``dirichlet`` and ``shards``; see
:mod:`p2pfl.data.partition` for the overlap option used when nodes outnumber
examples. :func:`partition_summary` and :func:`summary_table` describe a partition.
"""

from p2pfl.data.catalog import DATASETS, PARTITIONERS, Loader, Partitioner, load_dataset
from p2pfl.data.dataset import Dataset, Splits, split_train_test
from p2pfl.data.idx import read_idx, write_idx
from p2pfl.data.summary import heterogeneity, partition_summary, summary_table

__all__ = [
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
