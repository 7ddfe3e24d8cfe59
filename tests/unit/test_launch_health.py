"""Warnings a person sees: the launcher's live warning lines are rate-limited per node
and kind and in total (the rest only counted); ``node_health`` and the final table
count them per node from the nodes' end counters."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from p2pfl.cli.common import print_summary_table
from p2pfl.launcher.health import WarningPrinter, node_health, one_line


def warning(node: int, kind: str, round_: int, message: str | None = None) -> dict[str, Any]:
    text = message if message is not None else f"node {node}, round {round_}: {kind}"
    return {"event": "warning", "node": node, "kind": kind, "round": round_, "message": text}


def test_printer_shows_each_warning_message_as_it_comes() -> None:
    lines: list[str] = []
    printer = WarningPrinter(lines.append)
    printer(3, {"event": "round", "round": 1})  # not a warning: nothing
    printer(3, warning(3, "waited_out", 1, "node 3, round 1: waited 2.0 s for neighbour 5"))
    assert lines == ["p2pfl launch: warning: node 3, round 1: waited 2.0 s for neighbour 5"]
    printer(4, warning(4, "dead", 2))
    assert lines[-1] == "p2pfl launch: warning: node 4, round 2: dead"


def test_printer_limits_lines_per_node_and_kind_and_counts_the_rest() -> None:
    lines: list[str] = []
    printer = WarningPrinter(lines.append, per_kind=2, total=100)
    for r in range(10):
        printer(1, warning(1, "kept_own", r))
    printer(2, warning(2, "kept_own", 0))  # another node: its own allowance
    printer(1, warning(1, "suspected", 0))  # another kind: its own allowance

    assert lines == [
        "p2pfl launch: warning: node 1, round 0: kept_own",
        "p2pfl launch: warning: node 1, round 1: kept_own",
        "p2pfl launch: node 1: further kept_own warnings are not shown; "
        "summary.json counts them (node_health)",
        "p2pfl launch: warning: node 2, round 0: kept_own",
        "p2pfl launch: warning: node 1, round 0: suspected",
    ]
    assert printer.warnings == 12


def test_printer_has_a_total_cap_so_a_run_cannot_flood_the_terminal() -> None:
    lines: list[str] = []
    printer = WarningPrinter(lines.append, per_kind=3, total=5)
    for node in range(1000):
        printer(node, warning(node, "dead", 1))
    assert len(lines) == 6
    assert lines[-1].endswith(
        "more warnings than shown: every one is counted in summary.json (node_health)"
    )
    assert printer.warnings == 1000


def test_a_message_prints_on_one_line() -> None:
    lines: list[str] = []
    WarningPrinter(lines.append)(0, warning(0, "diverged", 1, "a\nb\x1b[2J\tc " + "x" * 500))
    assert len(lines) == 1 and "\n" not in lines[0] and "\x1b" not in lines[0]
    assert lines[0].startswith("p2pfl launch: warning: a b [2J c x")
    assert len(one_line("y" * 1000)) == 300


def test_node_health_reads_end_counters_with_defaults() -> None:
    health = node_health(
        {
            "1": {
                "rounds_trained": 8,
                "rounds_skipped": 2,
                "rounds_kept_own": 0,
                "rounds_waited_out": 3,
                "warnings": {"waited_out": 3, "skipped_rounds": 1, "dead": 0},
            },
            "0": {"rounds_completed": 10, "rounds_kept_own": 1},  # an older node's counters
            "2": "garbage",
        }
    )
    assert list(health) == ["0", "1"]
    assert health["0"] == {
        "rounds_trained": 0,
        "rounds_skipped": 0,
        "rounds_kept_own": 1,
        "rounds_waited_out": 0,
        "warnings": {},
    }
    assert health["1"]["warnings"] == {"skipped_rounds": 1, "waited_out": 3}


def summary_with(health: dict[str, Any]) -> dict[str, Any]:
    row = {"round": 2, "honest_accuracy_mean": 0.5, "honest_accuracy_min": 0.4}
    return {
        "history": [{**row, "honest_accuracy_max": 0.6}],
        "honest_accuracy_mean": 0.5,
        "honest_accuracy_min": 0.4,
        "rounds": 2,
        "wall_seconds": 1.0,
        "node_health": health,
    }


def test_final_table_lists_nodes_with_warnings_or_says_there_were_none(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    fine = {"rounds_trained": 2, "rounds_skipped": 0, "rounds_kept_own": 0}
    bad = {**fine, "rounds_waited_out": 1, "warnings": {"suspected": 2}}
    print_summary_table(summary_with({"0": fine, "1": fine}), "t", tmp_path)
    assert "node health: no warnings from any of 2 nodes" in capsys.readouterr().out

    print_summary_table(summary_with({"0": fine, "7": bad}), "t", tmp_path)
    out = capsys.readouterr().out
    assert "node health: 1 of 2 nodes had warnings" in out
    assert "suspected: 2" in out
    assert "│    7 │" in out and "│    0 │" not in out.split("node health")[1]


def test_diverged_nodes_lists_honest_nodes_with_their_round() -> None:
    from p2pfl.launcher.outputs import diverged_nodes

    counters = {
        "0": {"diverged_round": 7},
        "1": {"diverged_round": None},
        "2": {"diverged_round": 3},  # Byzantine: not reported
        "10": {"diverged_round": 12},
        "3": {},  # an older log without the counter
    }
    assert diverged_nodes(counters, [2]) == {"0": 7, "10": 12}
