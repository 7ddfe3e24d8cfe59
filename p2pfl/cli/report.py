"""``p2pfl report``: merge the output directories of one run's hosts into one summary.

::

    p2pfl report runs/host-a runs/host-b [--out DIR]

Each directory is what ``p2pfl launch --host NAME`` wrote on one machine; they
must exist, be named once each, come from the same run (same scenario and run id)
and hold disjoint nodes, else one line says why and the exit code is 2. Nodes
of the topology that none of them holds are named in a warning and in
``summary.json`` (``"missing_nodes"``). Writes the merged ``metrics.jsonl``
(final-round ``distance_to_mean`` over every host's nodes), ``summary.json``,
``accuracy.png`` and ``topology.png`` to ``--out``.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "report",
        help="merge per-host launch outputs into one summary and plots",
        description="Merge the output directories that `p2pfl launch --host` wrote on each "
        "machine of one run into one metrics.jsonl, summary.json and plots.",
    )
    p.add_argument("runs", nargs="+", metavar="DIR", help="launch output directories")
    p.add_argument("--out", default=None, help="output directory (default: runs/report-NAME-TIME)")
    p.add_argument("--quiet", action="store_true", help="no table")
    return p


def run(args: argparse.Namespace) -> int:
    from p2pfl.cli.common import output_dir, print_summary_table
    from p2pfl.config import scenario_from_dict
    from p2pfl.errors import ConfigError, TopologyError
    from p2pfl.launcher.health import as_count
    from p2pfl.launcher.outputs import add_final_distances, merge_runs, write_run
    from p2pfl.topology import load_topology

    runs = [Path(d) for d in args.runs]
    merged = merge_runs(runs)
    try:
        scenario = scenario_from_dict(merged.scenario)
    except ConfigError as exc:
        raise ConfigError(f"{runs[0]}/summary.json: its scenario is not valid: {exc}") from None
    byzantine = sorted({int(b) for s in merged.summaries for b in s.get("byzantine_nodes", [])})
    add_final_distances(merged.records, merged.params, byzantine, scenario.run.rounds)
    topology = None
    topology_file = merged.summaries[0].get("topology_file")
    if isinstance(topology_file, str) and Path(topology_file).is_file():
        try:
            topology = dataclasses.replace(
                load_topology(topology_file), byzantine=frozenset(byzantine)
            )
        except TopologyError:
            topology = None  # the plot is optional; the numbers are not
    if args.out and Path(args.out).resolve() in {r.resolve() for r in runs}:
        raise ConfigError(f"--out {args.out}: is one of the directories to merge; pick another")
    out = output_dir(args.out, scenario, "report")
    nodes = sorted({int(r["node"]) for r in merged.records})
    total = max(as_count(s.get("nodes")) for s in merged.summaries)
    if merged.missing_nodes:
        shown = ", ".join(map(str, merged.missing_nodes))
        print(
            f"p2pfl report: warning: {len(merged.missing_nodes)} of the topology's {total} nodes "
            f"are in none of these directories (node {shown}); the summary covers the others only",
            file=sys.stderr,
        )
    summary = write_run(
        out,
        merged.records,
        merged.scenario,
        max(float(s.get("wall_seconds", 0.0)) for s in merged.summaries),
        extra={
            **({"run_id": merged.run_id} if merged.run_id else {}),  # else from the scenario
            "mode": "report",
            "runs": [str(r) for r in runs],
            "nodes": total,
            "nodes_reported": nodes,
            "missing_nodes": merged.missing_nodes,
            "byzantine_nodes": byzantine,
            "parameters": merged.summaries[0].get("parameters"),
            "shared_parameters": merged.summaries[0].get("shared_parameters"),
            "node_exits": merged.node_exits,
            "node_counters": merged.node_counters,
        },
        topology=topology,
        title=scenario.run.name,
    )
    if not args.quiet:
        print_summary_table(summary, f"p2pfl report: {len(runs)} run directories", out)
    return 0
