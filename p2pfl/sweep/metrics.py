"""The numbers one sweep run reports, computed from its :class:`~p2pfl.sim.SimResult`.

* ``honest_accuracy_mean`` / ``honest_accuracy_min``: test accuracy over the honest
  nodes after the last round (mean, and the worst node);
* ``best_honest_accuracy_mean``: the best honest mean over all evaluation rounds;
* ``consensus_distance``: mean squared distance of the honest models to their mean;
* ``diverged``: how many honest nodes diverged (``diverged_nodes``: node -> round);
  their accuracy counts at chance, so a collapsed cell shows its collapse;
* ``bytes_sent_per_node_per_round``: what each honest node sent per round, header and
  payload (:func:`p2pfl.report.byte_counts`, as ``summary.json`` reports it);
* ``attack_success_rate``: backdoor runs only: the share of triggered test inputs
  (true class not the target) that an honest node's final model puts in the target
  class (:func:`p2pfl.attacks.attack_success_rate`), averaged over honest nodes;
* ``epsilon``: DP-SGD runs only: the largest honest node's epsilon
  (:func:`p2pfl.sim.outputs.sim_privacy`), at the run's ``delta``.

Per-node final accuracies and the honest per-round history are kept too, so that
experiments can report accuracy per group of nodes (e.g. per clique) and curves.
"""

from __future__ import annotations

from typing import Any

import torch

from p2pfl.sim.outputs import sim_privacy

BACKDOOR = "backdoor"


def backdoor_success(result: Any) -> float | None:
    """Mean attack success rate over honest nodes, or None when the attack is not a backdoor."""
    from p2pfl.attacks import attack_success_rate

    exp = result.experiment
    cfg = exp.scenario.byzantine
    if cfg.attack != BACKDOOR or not exp.byzantine:
        return None
    params = dict(cfg.params)
    target = int(params.get("target", 0))
    size = int(params.get("size", 3))
    value = params.get("value")
    rates = []
    for i in exp.honest:
        model = result.params[i : i + 1]

        def predict(x: torch.Tensor, model: torch.Tensor = model) -> torch.Tensor:
            return exp.fmodel.logits(model, x)[0]

        rates.append(
            attack_success_rate(
                predict,
                exp.test.x,
                exp.test.y,
                target,
                size=size,
                value=None if value is None else float(value),
            )
        )
    return sum(rates) / len(rates)


def run_metrics(result: Any) -> dict[str, Any]:
    """The result fields of one successful run (see the module docstring)."""
    from p2pfl.report import byte_counts

    exp = result.experiment
    final = result.final
    last = final.summary()
    sent = byte_counts(dict(enumerate(result.bytes_sent)), exp.honest, result.rounds)
    return {
        "honest_accuracy_mean": last["honest_accuracy_mean"],
        "honest_accuracy_min": last["honest_accuracy_min"],
        "best_honest_accuracy_mean": max(float(m.honest_accuracy.mean()) for m in result.history),
        "consensus_distance": last["consensus_distance"],
        "attack_success_rate": backdoor_success(result),
        "epsilon": sim_privacy(result).get("epsilon"),
        "nodes": exp.n,
        "byzantine": len(exp.byzantine),
        "diverged": len(result.diverged),
        "diverged_nodes": {str(k): v for k, v in sorted(result.diverged.items())},
        "warnings": list(result.warnings),
        "rounds": final.round,
        "bytes_sent_per_node_per_round": sent["bytes_sent_per_node_per_round"],
        "byzantine_nodes": sorted(exp.byzantine),
        "final_accuracy": [round(float(a), 6) for a in final.accuracy],
        "history": [m.summary() for m in result.history],
    }
