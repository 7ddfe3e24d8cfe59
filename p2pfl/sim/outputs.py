"""A simulation's files: ``metrics.jsonl`` (written as rounds are evaluated) and ``summary.json``.

:class:`MetricsLog` appends one record per node per evaluation while the run goes
on, so a run stopped part-way (Ctrl-C, SIGTERM, a crash) leaves every evaluation
so far. :func:`write_run_outputs` writes the final files from a
:class:`~p2pfl.sim.SimResult`; besides the fields every run directory has
(:func:`p2pfl.report.summarize_records`), a simulation's ``summary.json`` holds

* ``diverged_nodes``: ``{"node id": round}`` for each honest node whose
  parameters diverged (:func:`p2pfl.rounds.diverged`), empty when none did;
* ``stopped_early``: the round the run stopped at because every honest node had
  diverged, or null;
* ``warnings``: why an attack could not act (:func:`p2pfl.rounds.knowledge_warnings`);
* ``interrupted``: true when the run was stopped before its last round;
* ``bytes_sent_per_node_per_round``, ``bytes_sent_total``: what the nodes sent
  (:func:`p2pfl.report.byte_counts`).
* with DP-SGD (``privacy.mechanism = "dp_sgd"``): ``epsilon`` (the maximum over
  honest nodes), ``epsilon_per_node``, ``delta``, ``noise_multiplier`` and
  ``clip_norm`` (:func:`p2pfl.privacy.accounting.privacy_report`) for the rounds run.
* ``distributed`` (distributed runs only): ranks, partition method, edges cut, nodes
  per rank and halo bytes per round (:mod:`p2pfl.sim.distributed`).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import IO, Any

from p2pfl.experiment import Experiment
from p2pfl.sim.engine import RoundMetrics, SimResult


def round_records(exp: Experiment, m: RoundMetrics) -> list[dict[str, Any]]:
    """The ``metrics.jsonl`` records of one evaluation: one per node."""
    byz = exp.byzantine
    records = [
        {
            "round": m.round,
            "node": node,
            "byzantine": node in byz,
            "accuracy": float(m.accuracy[node]),
            "test_loss": float(m.test_loss[node]),
            "train_loss": float(m.train_loss[node]),
            "distance_to_mean": float(m.distance_to_mean[node]),
        }
        for node in range(m.accuracy.numel())
    ]
    for key, values in (
        ("local_accuracy", m.local_accuracy),
        ("personalized_accuracy", m.personalized_accuracy),
    ):
        if values is not None:
            for rec, v in zip(records, values.tolist(), strict=True):
                rec[key] = v
    return records


def sim_records(result: SimResult) -> list[dict[str, Any]]:
    """Every ``metrics.jsonl`` record of a result."""
    return [rec for m in result.history for rec in round_records(result.experiment, m)]


class MetricsLog:
    """``metrics.jsonl``, truncated on open and appended (and flushed) per evaluation."""

    def __init__(self, path: Path, exp: Experiment) -> None:
        self.path = path
        self._exp = exp
        self._fh: IO[str] = path.open("w")

    def append(self, m: RoundMetrics) -> None:
        from p2pfl.report import metrics_line

        self._fh.writelines(metrics_line(r) for r in round_records(self._exp, m))
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()


def sim_privacy(result: SimResult) -> dict[str, Any]:
    """The privacy fields of ``summary.json`` (empty without DP): every node trained every round."""
    from p2pfl.privacy.accounting import privacy_report

    exp = result.experiment
    dp = exp.training.privacy
    if dp is None:
        return {}
    steps = result.rounds * exp.training.local_steps
    return privacy_report(
        dp, exp.training.batch_size, exp.local.sizes, dict.fromkeys(exp.honest, steps), exp.honest
    )


def sim_summary(result: SimResult) -> dict[str, Any]:
    """``summary.json`` of a result (see the module docstring)."""
    from p2pfl.report import byte_counts, derive_run_id, summarize_records

    exp = result.experiment
    scenario = exp.scenario.to_dict()
    extra: dict[str, Any] = {
        "run_id": derive_run_id(exp.scenario.identity()),
        "mode": "sim",
        "nodes": exp.n,
        "byzantine_nodes": sorted(exp.byzantine),
        "parameters": exp.parameters,
        "shared_parameters": exp.shared_parameters,
        "diverged_nodes": {str(k): v for k, v in sorted(result.diverged.items())},
        "stopped_early": result.stopped_early,
        "warnings": list(result.warnings),
        "interrupted": result.interrupted,
        **byte_counts(dict(enumerate(result.bytes_sent)), exp.honest, result.rounds),
        **sim_privacy(result),
    }
    if result.distributed is not None:
        extra["distributed"] = result.distributed
    if not result.history:  # stopped before the first evaluation
        return {
            "rounds": 0,
            "wall_seconds": result.wall_seconds,
            **extra,
            "history": [],
            "scenario": scenario,
        }
    return summarize_records(sim_records(result), scenario, result.wall_seconds, extra=extra)


def write_run_outputs(result: SimResult, out: Path, plots: bool = True) -> dict[str, Any]:
    """Write metrics.jsonl, summary.json and (optionally) the two plots; return the summary."""
    from p2pfl.report import plot_accuracy, write_json, write_metrics

    exp = result.experiment
    write_metrics(out / "metrics.jsonl", sim_records(result))
    summary = sim_summary(result)
    write_json(out / "summary.json", summary)
    if plots and summary["history"]:
        from p2pfl.topology import draw

        plot_accuracy(summary["history"], out / "accuracy.png", title=exp.scenario.run.name)
        draw(dataclasses.replace(exp.topology, byzantine=exp.byzantine), out / "topology.png")
    return summary
