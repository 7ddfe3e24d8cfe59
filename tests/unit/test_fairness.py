"""Fairness statistics over honest nodes: p10 and standard deviation of every accuracy a
run records, in ``summary.json``, its history and the accuracy plot."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pfl.report import plot_accuracy, summarize_records
from p2pfl.report.outputs import percentile, spread

pytestmark = pytest.mark.timeout(60)

ACCS = st.lists(st.floats(0.0, 1.0, allow_nan=False), min_size=1, max_size=40)


@settings(max_examples=60, deadline=None)
@given(ACCS, st.floats(0.0, 100.0))
def test_percentile_matches_numpy_linear(values: list[float], q: float) -> None:
    assert percentile(values, q) == pytest.approx(float(np.percentile(values, q)), abs=1e-12)


@settings(max_examples=60, deadline=None)
@given(ACCS)
def test_spread_orders_and_population_std(values: list[float]) -> None:
    s = spread(values, "x")
    assert s["x_min"] - 1e-12 <= s["x_p10"] <= s["x_max"] + 1e-12
    assert s["x_std"] == pytest.approx(float(np.std(values)), abs=1e-9)


def _records(accs: list[float], byz: int, **extra: list[float]) -> list[dict[str, Any]]:
    out = []
    for node, a in enumerate(accs):
        rec: dict[str, Any] = {"round": 4, "node": node, "byzantine": node == byz, "accuracy": a}
        for key, values in extra.items():
            rec[key] = values[node]
        out.append(rec)
    return out


def test_summary_reports_p10_and_std_over_honest_nodes_only() -> None:
    accs = [0.9, 0.8, 0.1, 0.7, 0.95, 0.85, 0.6, 0.75, 0.88, 0.92, 0.5]
    records = _records(accs, byz=2)  # node 2 (0.1) is Byzantine: not counted
    summary = summarize_records(records, {"run": {}}, 1.0)
    honest = [a for i, a in enumerate(accs) if i != 2]
    assert summary["honest_accuracy_p10"] == pytest.approx(np.percentile(honest, 10))
    assert summary["honest_accuracy_std"] == pytest.approx(np.std(honest))
    assert summary["honest_accuracy_min"] == 0.5
    assert "local_accuracy_mean" not in summary and "personalized_accuracy_p10" not in summary


def test_summary_reports_local_and_personalized_when_recorded() -> None:
    accs = [0.5, 0.6, 0.7, 0.8]
    local = [0.4, 0.9, 0.2, 0.3]
    pers = [0.8, 1.0, 0.6, 0.9]
    summary = summarize_records(
        _records(accs, byz=3, local_accuracy=local, personalized_accuracy=pers), {"run": {}}, 1.0
    )
    assert summary["local_accuracy_mean"] == pytest.approx(0.5)
    assert summary["local_accuracy_p10"] == pytest.approx(np.percentile(local[:3], 10))
    assert summary["personalized_accuracy_mean"] == pytest.approx(0.8)
    assert summary["personalized_accuracy_std"] == pytest.approx(np.std(pers[:3]))
    assert summary["history"][-1]["local_accuracy_min"] == 0.2


def test_plot_draws_the_p10_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import matplotlib.axes

    labels: list[str] = []
    real = matplotlib.axes.Axes.plot

    def spy(self: Any, *args: Any, **kwargs: Any) -> Any:
        labels.append(kwargs.get("label", ""))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(matplotlib.axes.Axes, "plot", spy)
    history = summarize_records(_records([0.5, 0.6, 0.9], byz=-1), {"run": {}}, 1.0)["history"]
    plot_accuracy(history, tmp_path / "acc.png")
    assert "honest p10" in labels
    assert (tmp_path / "acc.png").stat().st_size > 0
