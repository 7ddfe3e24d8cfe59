"""Metrics records, run summaries, and their files."""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypedDict

from p2pfl.errors import ConfigError


class NodeRecord(TypedDict, total=False):
    """One line of ``metrics.jsonl``: one node after one evaluation round.

    ``local_accuracy`` (the shared model on the node's own test split) is there when
    ``evaluation.local_test`` is on; ``personalized_accuracy`` (after
    ``evaluation.personalize_steps`` local fine-tuning steps, on the same split) in
    the final round's records only.
    """

    round: int
    node: int
    byzantine: bool
    accuracy: float
    test_loss: float
    train_loss: float
    distance_to_mean: float
    local_accuracy: float
    personalized_accuracy: float


#: The per-node accuracies a record may carry, and the summary prefix of each.
ACCURACY_KEYS = {
    "accuracy": "honest_accuracy",
    "local_accuracy": "local_accuracy",
    "personalized_accuracy": "personalized_accuracy",
}


_REQUIRED = ("round", "node", "byzantine", "accuracy")


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no NaN; null reads back unambiguously
    if isinstance(value, Mapping):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def write_json(path: str | Path, data: Mapping[str, Any]) -> None:
    """Write JSON atomically (temporary file, then rename)."""
    p = Path(path)
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_text(json.dumps(_clean(data), indent=2, sort_keys=False) + "\n")
    os.replace(tmp, p)


def metrics_line(record: Mapping[str, Any]) -> str:
    """One ``metrics.jsonl`` line (non-finite numbers as null), newline included."""
    return json.dumps(_clean(record)) + "\n"


def write_metrics(path: str | Path, records: Iterable[Mapping[str, Any]]) -> None:
    p = Path(path)
    tmp = p.with_name(p.name + ".tmp")
    with tmp.open("w") as fh:
        for rec in records:
            fh.write(metrics_line(rec))
    os.replace(tmp, p)


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """Read a ``metrics.jsonl``; a malformed line is a ConfigError naming file and line."""
    p = Path(path)
    out = []
    try:
        lines = p.read_text().splitlines()
    except FileNotFoundError:
        raise ConfigError(f"{p}: no such metrics file") from None
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{p}:{lineno}: not JSON: {exc.msg}") from None
        if not isinstance(rec, dict) or any(k not in rec for k in _REQUIRED):
            raise ConfigError(f"{p}:{lineno}: a metrics record needs keys {', '.join(_REQUIRED)}")
        out.append(rec)
    return out


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0..100) with linear interpolation between order statistics
    (numpy's default, "type 7" of Hyndman and Fan 1996): for sorted ``v`` of length
    ``n``, position ``h = (n - 1) q / 100``, value ``v[floor h] + (h - floor h)
    (v[floor h + 1] - v[floor h])``."""
    if not values:
        raise ValueError("percentile of no values")
    v = sorted(values)
    h = (len(v) - 1) * q / 100.0
    lo = math.floor(h)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (h - lo) * (v[hi] - v[lo])


def spread(values: Sequence[float], prefix: str) -> dict[str, float]:
    """Mean, min, max, 10th percentile (:func:`percentile`) and population standard deviation
    (``sqrt(mean((v - mean)^2))``) of ``values`` as ``{prefix}_mean`` ... ``{prefix}_std``.

    The fairness view of a run: the p10 is the accuracy that 90% of the honest
    nodes reach, so a rule that serves most nodes well and a few badly shows it
    there, not in the mean (Li et al., "Fair resource allocation in federated
    learning", ICLR 2020, report the same worst-10% and variance statistics).
    """
    mean = sum(values) / len(values)
    return {
        f"{prefix}_mean": mean,
        f"{prefix}_min": min(values),
        f"{prefix}_max": max(values),
        f"{prefix}_p10": percentile(values, 10.0),
        f"{prefix}_std": math.sqrt(sum((v - mean) ** 2 for v in values) / len(values)),
    }


def round_summaries(records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per evaluation round: honest accuracy mean/min/max/p10/std (:func:`spread`), the same
    for local and personalized accuracy when the records carry them, and mean losses,
    sorted by round."""
    by_round: dict[int, list[Mapping[str, Any]]] = {}
    for rec in records:
        if not rec["byzantine"]:
            by_round.setdefault(int(rec["round"]), []).append(rec)
    out = []
    for r in sorted(by_round):
        rows = by_round[r]
        entry: dict[str, Any] = {"round": r, "nodes": len(rows)}
        for key, prefix in ACCURACY_KEYS.items():
            acc = [float(x[key]) for x in rows if x.get(key) is not None]
            if acc:
                entry |= spread(acc, prefix)
        for key in ("train_loss", "test_loss", "distance_to_mean"):
            vals = [float(x[key]) for x in rows if x.get(key) is not None]
            if vals:
                entry[f"honest_{key}"] = sum(vals) / len(vals)
        if "honest_distance_to_mean" in entry:
            entry["consensus_distance"] = entry.pop("honest_distance_to_mean")
        out.append(entry)
    return out


def byte_counts(
    bytes_sent: Mapping[int, int], honest: Iterable[int], rounds: int
) -> dict[str, Any]:
    """``summary.json``'s byte fields from each node's vector bytes over ``rounds`` rounds.

    ``bytes_sent_per_node_per_round``: the mean over honest nodes of what each sent
    per round; ``bytes_sent_total``: everything every node sent. A node's bytes are
    its vector messages (header and payload, :func:`p2pfl.wire.encoded_nbytes`),
    once per neighbour; hellos, heartbeats and byes are not counted. The simulator
    counts what its nodes would send, a networked node what its transport sent.
    """
    mine = [int(bytes_sent.get(i, 0)) for i in honest]
    per = sum(mine) / len(mine) / rounds if mine and rounds else 0.0
    return {
        "bytes_sent_per_node_per_round": per,
        "bytes_sent_total": int(sum(bytes_sent.values())),
    }


def derive_run_id(*parts: Any) -> str:
    """A run id: 16 hex digits of SHA-256 over ``parts`` as canonical JSON.

    ``summary.json`` carries one. ``sim`` derives it from the resolved scenario;
    ``launch`` from the scenario and the topology it ran (addresses, keys), so the
    hosts of one deployment, each launching its share, agree on it without
    talking, and ``report`` can refuse directories of different runs.
    """
    blob = json.dumps(_clean(list(parts)), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


_SPREAD = ("_mean", "_min", "_max", "_p10", "_std")


def summarize_records(
    records: Sequence[Mapping[str, Any]],
    scenario: Mapping[str, Any],
    wall_seconds: float,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The ``summary.json`` content: final honest accuracy, history, the resolved scenario.

    Over the honest nodes of the final evaluation: ``honest_accuracy_mean``, ``_min``,
    ``_max``, ``_p10`` and ``_std`` (:func:`spread`), and the same for
    ``local_accuracy_*`` and ``personalized_accuracy_*`` when the records carry them.

    ``run_id`` is ``extra["run_id"]`` if given, else :func:`derive_run_id` of ``scenario``.
    """
    history = round_summaries(records)
    if not history:
        raise ConfigError("no evaluation records from honest nodes: nothing to summarize")
    last = history[-1]
    summary: dict[str, Any] = {"run_id": derive_run_id(scenario)}
    # the final round's spread of every accuracy the records carry (fairness: p10, std)
    summary |= {k: v for k, v in last.items() if k.endswith(_SPREAD)}
    summary |= {
        "best_honest_accuracy_mean": max(h["honest_accuracy_mean"] for h in history),
        "consensus_distance": last.get("consensus_distance"),
        "rounds": last["round"],
        "wall_seconds": wall_seconds,
    }
    if extra:
        summary.update(extra)
    summary["history"] = history
    summary["scenario"] = dict(scenario)
    return summary
