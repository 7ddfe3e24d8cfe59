"""partition_summary, heterogeneity and the rich table."""

from __future__ import annotations

import json

import numpy as np
import pytest
from rich.console import Console

from p2pfl.data import heterogeneity, partition_summary, summary_table
from p2pfl.errors import DataError

pytestmark = pytest.mark.timeout(30)

LABELS = np.array([0, 0, 1, 1, 2, 2])


def test_summary_of_a_label_sorted_split() -> None:
    parts = [np.array([0, 1]), np.array([2, 3, 4, 5])]
    s = partition_summary(LABELS, parts, 3)
    assert s["nodes"] == 2 and s["samples"] == 6 and s["assigned"] == 6
    assert s["sizes"] == [2, 4] and s["classes_per_node"] == [1, 2]
    assert s["histograms"] == [[2, 0, 0], [0, 2, 2]]
    # node 0: q=(1,0,0) vs p=(1/3,1/3,1/3): TV = 2/3; node 1: q=(0,.5,.5): TV = 1/3
    assert s["tv"] == pytest.approx([2 / 3, 1 / 3])
    assert s["heterogeneity"] == pytest.approx(0.5)
    assert s["size_min"] == 2 and s["size_max"] == 4 and s["size_mean"] == 3.0
    assert s["overlap"] is False
    json.dumps(s)  # JSON-ready


def test_stratified_split_has_zero_heterogeneity() -> None:
    parts = [np.array([0, 2, 4]), np.array([1, 3, 5])]
    assert heterogeneity(LABELS, parts, 3) == pytest.approx(0.0)


def test_overlap_is_reported() -> None:
    s = partition_summary(LABELS, [np.array([0, 1]), np.array([1, 2])], 3)
    assert s["overlap"] is True and s["assigned"] == 4


def test_bad_inputs() -> None:
    with pytest.raises(DataError, match="out of range"):
        partition_summary(LABELS, [np.array([6])], 3)
    with pytest.raises(DataError, match=r"labels must lie in \[0, 2\)"):
        partition_summary(LABELS, [np.array([0])], 2)


def test_table_renders_and_truncates() -> None:
    parts = [np.array([i]) for i in range(6)]
    table = summary_table(partition_summary(LABELS, parts, 3), max_rows=4)
    console = Console(width=120, record=True)
    console.print(table)
    text = console.export_text()
    assert "6 nodes, 6 examples" in text
    assert "(2 more nodes)" in text
    assert "heterogeneity (mean TV) 0.667" in text
