"""Run outputs of networked runs: node logs in, ``metrics.jsonl`` / ``summary.json`` / plots out.

A ``p2pfl launch`` directory holds the outputs ``p2pfl sim`` writes (same record
format, :mod:`p2pfl.report`) plus ``nodes/``: each node's event log
``node-<k>.jsonl``, its final parameters ``node-<k>.npy`` and its stderr.
Each node knows only its own parameters, so ``distance_to_mean`` (squared
distance to the honest nodes' mean) is filled in for the final round only, from
the final parameter files; ``p2pfl report`` recomputes it over every host's nodes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from p2pfl.errors import ConfigError
from p2pfl.launcher.health import HEALTH_KEY, as_count, node_health
from p2pfl.node.metrics import eval_records, read_node_log
from p2pfl.node.process import log_path, params_path
from p2pfl.report import (
    byte_counts,
    plot_accuracy,
    read_metrics,
    summarize_records,
    write_json,
    write_metrics,
)
from p2pfl.topology import Topology, draw

NODE_DIR = "nodes"
PARAM_FILE = re.compile(r"node-(\d+)\.npy")


@dataclass
class NodeOutputs:
    """What the node processes of one directory left: records, final vectors, end events."""

    records: list[dict[str, Any]] = field(default_factory=list)
    params: dict[int, np.ndarray] = field(default_factory=dict)
    ends: dict[int, dict[str, Any]] = field(default_factory=dict)
    round_seconds: dict[int, list[float]] = field(default_factory=dict)


def load_params(path: Path) -> np.ndarray:
    """A node's final parameter vector (``numpy.load`` without pickle)."""
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: not a parameter vector file: {exc}") from None
    if array.ndim != 1 or array.dtype != np.float32:
        raise ConfigError(f"{path}: expected a float32 vector, got {array.dtype} {array.shape}")
    return array


def read_node_outputs(node_dir: Path, nodes: Iterable[int]) -> NodeOutputs:
    """Collect the logs and parameter files of ``nodes`` in ``node_dir`` (missing ones skipped)."""
    out = NodeOutputs()
    for k in nodes:
        log = log_path(node_dir, k)
        if log.exists():
            events = read_node_log(log)
            out.records += eval_records(events)
            out.round_seconds[k] = [e["seconds"] for e in events if e["event"] == "round"]
            ends = [e for e in events if e["event"] == "end"]
            if ends:
                out.ends[k] = {
                    key: v for key, v in ends[-1].items() if key not in ("event", "time")
                }
        p = params_path(node_dir, k)
        if p.exists():
            out.params[k] = load_params(p)
    return out


def add_final_distances(
    records: list[dict[str, Any]],
    params: Mapping[int, np.ndarray],
    byzantine: Iterable[int],
    final_round: int,
) -> None:
    """Fill ``distance_to_mean`` of the final round's records from the final vectors."""
    byz = set(byzantine)
    honest = [params[k].astype(np.float64) for k in sorted(params) if k not in byz]
    if not honest:
        return
    mean = np.mean(np.stack(honest), axis=0)
    for rec in records:
        k = rec["node"]
        if rec["round"] == final_round and k in params:
            rec["distance_to_mean"] = float(((params[k] - mean) ** 2).sum())


def sort_records(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(records, key=lambda r: (r["round"], r["node"]))


def node_rejections(node_counters: Mapping[str, Any]) -> dict[str, Any]:
    """Per node, what it refused to use: the ``"rejections"`` key of ``summary.json``.

    ``node_counters`` maps node id to its end event's counters
    (:meth:`p2pfl.node.metrics.NodeCounters.as_dict`). For each node: ``accepted``,
    ``rejected`` and ``by_reason`` (boundary checks, :mod:`p2pfl.validation`, summed
    over peers), ``by_peer`` (each peer's rejections by reason, peers with none
    omitted), ``inbox_dropped`` (accepted vectors the round inbox dropped: late,
    too far ahead, duplicate) and ``outbox_dropped`` + ``sends_dropped`` (own
    messages given up). A node without counters (killed) is omitted.
    """
    out: dict[str, Any] = {}
    for node, counters in sorted(node_counters.items(), key=lambda kv: int(kv[0])):
        if not isinstance(counters, Mapping) or not isinstance(counters.get("rejections"), Mapping):
            continue
        rej = counters["rejections"]
        by_peer = rej.get("by_peer", {})
        out[str(node)] = {
            "accepted": int(rej.get("accepted", 0)),
            "rejected": int(rej.get("rejected", 0)),
            "by_reason": dict(rej.get("by_reason", {})),
            "by_peer": {
                peer: dict(v["rejected"])
                for peer, v in by_peer.items()
                if isinstance(v, Mapping) and v.get("rejected")
            },
            "inbox_dropped": dict(counters.get("inbox_dropped", {})),
            "outbox_dropped": int(counters.get("outbox_dropped", 0)),
            "sends_dropped": int(counters.get("sends_dropped", 0)),
        }
    return out


def diverged_nodes(node_counters: Mapping[str, Any], byzantine: Iterable[int]) -> dict[str, int]:
    """``{"node": round}`` of each honest node whose vector diverged (as ``p2pfl sim`` reports)."""
    byz = {str(b) for b in byzantine}
    out = {}
    for node, counters in node_counters.items():
        r = counters.get("diverged_round") if isinstance(counters, Mapping) else None
        if type(r) is int and str(node) not in byz:
            out[str(node)] = r
    return dict(sorted(out.items(), key=lambda kv: int(kv[0])))


def node_bytes(node_counters: Mapping[str, Any], byzantine: Iterable[int]) -> dict[str, Any]:
    """``summary.json``'s byte fields (:func:`p2pfl.report.byte_counts`) from what each node
    measured it sent (``bytes_sent``), over the rounds the nodes reached."""
    byz = {int(b) for b in byzantine}
    sent: dict[int, int] = {}
    rounds = 0
    for node, counters in node_counters.items():
        if isinstance(counters, Mapping):
            sent[int(node)] = int(counters.get("bytes_sent", 0) or 0)
            rounds = max(rounds, int(counters.get("last_round", 0) or 0))
    return byte_counts(sent, [i for i in sent if i not in byz], rounds)


def privacy_fields(node_counters: Mapping[str, Any], byzantine: Iterable[int]) -> dict[str, Any]:
    """``summary.json``'s DP fields, as ``p2pfl sim`` writes them, from the honest nodes' end events.

    Each DP-SGD node ends its log with its own ``epsilon`` (and the run's ``delta``,
    ``noise_multiplier``, ``clip_norm``); ``epsilon`` is their maximum. Empty without DP.
    """
    byz = {str(b) for b in byzantine}
    ends = {
        str(node): c
        for node, c in node_counters.items()
        if str(node) not in byz and isinstance(c, Mapping) and isinstance(c.get("epsilon"), float)
    }
    if not ends:
        return {}
    per_node = {node: ends[node]["epsilon"] for node in sorted(ends, key=int)}
    first = ends[next(iter(per_node))]
    return {
        "epsilon": max(per_node.values()),
        "epsilon_per_node": per_node,
        **{key: first.get(key) for key in ("delta", "noise_multiplier", "clip_norm")},
    }


def write_run(
    out: Path,
    records: Sequence[dict[str, Any]],
    scenario: Mapping[str, Any],
    wall_seconds: float,
    extra: Mapping[str, Any],
    *,
    topology: Topology | None,
    title: str,
    plots: bool = True,
) -> dict[str, Any]:
    """``metrics.jsonl``, ``summary.json`` and (optionally) the two plots; returns the summary.

    With ``extra["node_counters"]`` (launch, report) the summary also gets
    ``"rejections"`` (:func:`node_rejections`) and ``"node_health"``
    (:func:`p2pfl.launcher.health.node_health`) of them, the byte fields
    (:func:`node_bytes`) and, with DP-SGD, the privacy fields (:func:`privacy_fields`).
    """
    ordered = sort_records(records)
    write_metrics(out / "metrics.jsonl", ordered)
    counters = extra.get("node_counters")
    if isinstance(counters, Mapping):
        extra = {
            **extra,
            "rejections": node_rejections(counters),
            HEALTH_KEY: node_health(counters),
            "diverged_nodes": diverged_nodes(counters, extra.get("byzantine_nodes", ())),
            **node_bytes(counters, extra.get("byzantine_nodes", ())),
            **privacy_fields(counters, extra.get("byzantine_nodes", ())),
        }
    summary = summarize_records(ordered, scenario, wall_seconds, extra=extra)
    write_json(out / "summary.json", summary)
    if plots:
        plot_accuracy(summary["history"], out / "accuracy.png", title=title)
        if topology is not None:
            draw(topology, out / "topology.png")
    return summary


# ----------------------------------------------------------------------------- report


@dataclass
class MergedRuns:
    """Several hosts' launch directories of one run, combined.

    ``missing_nodes``: nodes of the topology that none of the directories ran.
    """

    records: list[dict[str, Any]]
    params: dict[int, np.ndarray]
    scenario: dict[str, Any]
    summaries: list[dict[str, Any]]
    node_exits: dict[str, str]
    node_counters: dict[str, Any]
    run_id: str | None = None
    missing_nodes: list[int] = field(default_factory=list)


def _check_directories(runs: Sequence[Path]) -> None:
    """Each one an existing directory, none named twice (under any spelling)."""
    if not runs:
        raise ConfigError("report: name at least one run directory")
    seen: dict[Path, Path] = {}
    for run in runs:
        if not run.exists():
            raise ConfigError(f"{run}: no such directory")
        if not run.is_dir():
            raise ConfigError(f"{run}: not a directory")
        key = run.resolve()
        if key in seen:
            same = "twice" if str(seen[key]) == str(run) else f"twice (also as {seen[key]})"
            raise ConfigError(f"{run}: given {same}; name each host's directory once")
        seen[key] = run


def _read_summary(run: Path) -> dict[str, Any]:
    path = run / "summary.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(
            f"{run}: no summary.json; not an output directory of p2pfl launch"
        ) from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("scenario"), dict):
        raise ConfigError(f"{path}: not a p2pfl summary (no scenario)")
    return data


def _check_one_run(runs: Sequence[Path], summaries: Sequence[dict[str, Any]]) -> str | None:
    """The runs' common run id; ConfigError if their scenarios or run ids differ."""
    scenario, first = summaries[0]["scenario"], summaries[0].get("run_id")
    for run, s in zip(runs[1:], summaries[1:], strict=True):
        if s["scenario"] != scenario:
            raise ConfigError(
                f"{run} ran a different scenario than {runs[0]}; report merges the hosts of one run"
            )
        if s.get("run_id") != first:
            raise ConfigError(
                f"{run} is run {s.get('run_id')} but {runs[0]} is run {first}: directories of "
                "different runs (a relaunch, or other keys or addresses in the topology); report "
                "merges the hosts of one run"
            )
    return first if isinstance(first, str) else None


def _nodes_of(
    run: Path, summary: Mapping[str, Any], records: Sequence[Mapping[str, Any]]
) -> set[int]:
    """The nodes a directory holds: those it ran, has records of, or final vectors of."""
    nodes = {int(r["node"]) for r in records}
    here = summary.get("nodes_here", [])
    if isinstance(here, list):
        nodes |= {k for k in here if isinstance(k, int)}
    return nodes | set(_param_files(run))


def _param_files(run: Path) -> dict[int, Path]:
    """The final parameter files in a directory's ``nodes/``, by node id."""
    node_dir = run / NODE_DIR
    if not node_dir.is_dir():
        return {}
    found = (PARAM_FILE.fullmatch(p.name) for p in node_dir.iterdir())
    return {int(m[1]): node_dir / m[0] for m in found if m}


def merge_runs(runs: Sequence[Path]) -> MergedRuns:
    """Combine the launch directories of one run's hosts.

    ConfigError when a directory is missing, named twice, not a launch output, of
    another scenario or run id, or holds a node another one holds too.
    """
    _check_directories(runs)
    summaries = [_read_summary(r) for r in runs]
    run_id = _check_one_run(runs, summaries)
    records: list[dict[str, Any]] = []
    owner: dict[int, Path] = {}
    params: dict[int, np.ndarray] = {}
    exits: dict[str, str] = {}
    counters: dict[str, Any] = {}
    for run, s in zip(runs, summaries, strict=True):
        run_records = read_metrics(run / "metrics.jsonl")
        for node in sorted(_nodes_of(run, s, run_records)):
            if node in owner:
                raise ConfigError(
                    f"node {node} has outputs in both {owner[node]} and {run}; each node "
                    "runs on one host"
                )
            owner[node] = run
        records += run_records
        params |= {k: load_params(p) for k, p in _param_files(run).items()}
        exits.update(s.get("node_exits", {}))
        counters.update(s.get("node_counters", {}))
    total = max(as_count(s.get("nodes")) for s in summaries)
    missing = sorted(set(range(total)) - set(owner))
    return MergedRuns(
        records, params, summaries[0]["scenario"], summaries, exits, counters, run_id, missing
    )
