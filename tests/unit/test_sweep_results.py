"""Sweep tables and heatmaps from synthetic run records."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import pytest

from p2pfl.errors import ConfigError
from p2pfl.sweep.heatmap import choose_axes, panels, parse_axes, plot_heatmap, worst_matrix
from p2pfl.sweep.results import markdown_table, summarize, write_csv, write_markdown

pytestmark = pytest.mark.timeout(60)

KEYS = ["aggregator.name", "byzantine.attack"]


def rec(
    rule: str, attack: str, seed: int, acc: float, worst: float, **extra: Any
) -> dict[str, Any]:
    return {
        "cell": f"{rule}-{attack}-{seed}",
        "values": {"aggregator.name": rule, "byzantine.attack": attack},
        "seed": seed,
        "status": "ok",
        "error": None,
        "honest_accuracy_mean": acc,
        "honest_accuracy_min": worst,
        "best_honest_accuracy_mean": acc + 0.01,
        "consensus_distance": 0.5,
        "attack_success_rate": None,
        "nodes": 8,
        "byzantine": 2,
        "rounds": 3,
        "wall_seconds": 1.0,
        **extra,
    }


def failed(rule: str, attack: str, seed: int, msg: str) -> dict[str, Any]:
    return {
        "cell": f"{rule}-{attack}-{seed}",
        "values": {"aggregator.name": rule, "byzantine.attack": attack},
        "seed": seed,
        "status": "failed",
        "error": msg,
        "wall_seconds": 0.1,
    }


RECORDS = [
    rec("mean", "alie", 0, 0.30, 0.20),
    rec("mean", "alie", 1, 0.50, 0.40),
    rec("median", "alie", 0, 0.90, 0.85),
    rec("median", "alie", 1, 0.92, 0.80),
    failed("krum", "alie", 0, "aggregator.f: krum with f=1 needs at least 5 vectors"),
    failed("krum", "alie", 1, "aggregator.f: krum with f=1 needs at least 5 vectors"),
]


def test_summary_takes_mean_over_seeds_and_worst_of_worst() -> None:
    cells = summarize(RECORDS, KEYS)
    assert [c.values for c in cells] == [("mean", "alie"), ("median", "alie"), ("krum", "alie")]
    mean, median, krum = cells
    assert mean.acc_mean == pytest.approx(0.40)
    assert mean.acc_std == pytest.approx(0.1414213, rel=1e-5)
    assert mean.worst == pytest.approx(0.20)
    assert median.worst == pytest.approx(0.80)
    assert krum.ok == 0 and krum.acc_mean is None and "needs at least 5" in krum.errors[0]


def test_csv_has_one_row_per_run_with_swept_keys(tmp_path: Path) -> None:
    path = tmp_path / "results.csv"
    write_csv(path, RECORDS, KEYS)
    rows = list(csv.DictReader(path.open()))
    assert len(rows) == len(RECORDS)
    assert rows[0]["aggregator.name"] == "mean" and rows[0]["byzantine.attack"] == "alie"
    assert float(rows[0]["honest_accuracy_mean"]) == pytest.approx(0.30)
    assert rows[0]["attack_success_rate"] == ""
    assert rows[4]["status"] == "failed" and "needs at least" in rows[4]["error"]
    for col in (
        "seed",
        "honest_accuracy_min",
        "best_honest_accuracy_mean",
        "consensus_distance",
        "wall_seconds",
    ):
        assert col in rows[0]


def test_markdown_table_shows_failures_and_asr_only_when_present(tmp_path: Path) -> None:
    text = markdown_table(RECORDS, KEYS)
    lines = text.strip().splitlines()
    assert len(lines) == 2 + 3
    assert "ASR" not in lines[0]
    assert "0.400 ± 0.141" in lines[2]
    assert "2/2 failed" in lines[4]
    with_asr = [*RECORDS, rec("median", "backdoor", 0, 0.9, 0.8, attack_success_rate=0.25)]
    assert "ASR" in markdown_table(with_asr, KEYS).splitlines()[0]
    assert "0.250" in markdown_table(with_asr, KEYS)
    write_markdown(tmp_path / "r.md", RECORDS, KEYS, title="t")
    assert (tmp_path / "r.md").read_text().startswith("# t\n")


def test_choose_axes_prefers_rule_by_attack() -> None:
    assert choose_axes(["topology.n", "byzantine.attack", "aggregator.name"]) == (
        "aggregator.name",
        "byzantine.attack",
    )
    assert choose_axes(["byzantine.count", "aggregator.name"]) == (
        "aggregator.name",
        "byzantine.count",
    )
    assert choose_axes(["topology.n"]) == ("topology.n", None)
    assert choose_axes(["a.b", "c.d"]) == ("a.b", "c.d")
    assert choose_axes([]) is None


def test_parse_axes_checks_keys() -> None:
    assert parse_axes("aggregator.name,byzantine.attack", KEYS) == tuple(KEYS)
    with pytest.raises(ConfigError, match="not a swept key"):
        parse_axes("aggregator.name,topology.n", KEYS)
    with pytest.raises(ConfigError, match="two different"):
        parse_axes("aggregator.name,aggregator.name", KEYS)
    with pytest.raises(ConfigError, match="ROW_KEY"):
        parse_axes("a,b,c", KEYS)


def test_worst_matrix_is_min_over_seeds_and_flags_all_failed_cells() -> None:
    rows, cols, value, fail = worst_matrix(RECORDS, "aggregator.name", "byzantine.attack")
    assert rows == ["mean", "median", "krum"] and cols == ["alie"]
    assert value == [[0.20], [0.80], [None]]
    assert fail == [[False], [False], [True]]


def test_panels_split_by_other_keys_and_fold_when_too_many() -> None:
    recs = []
    for n in range(3):
        for r in RECORDS[:4]:
            recs.append({**r, "values": {**r["values"], "topology.n": str(n)}})
    keys = [*KEYS, "topology.n"]
    parts = panels(recs, keys, *KEYS)
    assert [t for t, _ in parts] == ["topology.n=0", "topology.n=1", "topology.n=2"]
    assert all(len(p) == 4 for _, p in parts)
    many = [
        {**r, "values": {**r["values"], "topology.n": str(n)}}
        for n in range(20)
        for r in RECORDS[:1]
    ]
    folded = panels(many, keys, *KEYS)
    assert len(folded) == 1 and folded[0][0].startswith("min over")


def test_a_zip_group_makes_no_panels_of_its_own_and_labels_together() -> None:
    """Attack and its parameters swept together: one panel, labels with the parameters."""
    params = {"alie": "{z=10}", "ipm": "{}"}
    recs = [
        {**r, "values": {**r["values"], "byzantine.attack": a, "byzantine.params": params[a]}}
        for r in RECORDS[:4]
        for a in params
    ]
    keys = [*KEYS, "byzantine.params"]
    groups = [["byzantine.attack", "byzantine.params"]]
    assert len(panels(recs, keys, KEYS[0], KEYS[1], groups)) == 1
    assert len(panels(recs, keys, KEYS[0], KEYS[1])) == 2  # crossed, a panel per table
    _, cols, _, _ = worst_matrix(recs, KEYS[0], KEYS[1], groups)
    assert cols == ["alie {z=10}", "ipm"]
    by_rule = panels(recs, keys, "aggregator.name", None, groups)
    assert [t for t, _ in by_rule] == ["byzantine.attack=alie {z=10}", "byzantine.attack=ipm"]


def test_plot_heatmap_writes_a_small_png(tmp_path: Path) -> None:
    path = tmp_path / "h.png"
    assert plot_heatmap(RECORDS, KEYS, path)
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) < 200_000
    assert not plot_heatmap(RECORDS, [], tmp_path / "none.png")
    assert not (tmp_path / "none.png").exists()
