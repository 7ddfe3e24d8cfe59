"""The vectorized synchronous simulator.

Per round ``r`` (1-based): every node runs local SGD (all nodes at once, see
:func:`p2pfl.learning.local_steps`); vector attackers craft their messages from
what they can see (:class:`p2pfl.rounds.AttackGeometry`); every node that follows
the protocol aggregates its own and its received vectors with the rule, one
batched call per :class:`~p2pfl.sim.plan.AggregationGroup`; Byzantine nodes keep
the mean of their own and their honest neighbours' vectors. Every
``run.eval_every`` rounds and after the last, every node is evaluated on the
held-out test set. The same scenario and seed give the same numbers.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from p2pfl.aggregators import Neighbourhood
from p2pfl.config import Scenario
from p2pfl.experiment import Experiment, build_experiment
from p2pfl.learning import evaluate, local_steps
from p2pfl.rounds import AttackGeometry, aggregate_hood, attack_geometry, craft_messages
from p2pfl.sim.plan import RoundPlan, make_plan


@dataclass(frozen=True)
class RoundMetrics:
    """Evaluation after a round; tensors have one entry per node (Byzantine ones included)."""

    round: int
    accuracy: torch.Tensor
    test_loss: torch.Tensor
    train_loss: torch.Tensor
    distance_to_mean: torch.Tensor
    consensus_distance: float
    honest: torch.Tensor = field(repr=False)  # (N,) bool

    @property
    def honest_accuracy(self) -> torch.Tensor:
        return self.accuracy[self.honest]

    def summary(self) -> dict[str, float]:
        acc = self.honest_accuracy
        return {
            "round": self.round,
            "honest_accuracy_mean": float(acc.mean()),
            "honest_accuracy_min": float(acc.min()),
            "honest_accuracy_max": float(acc.max()),
            "honest_train_loss": float(self.train_loss[self.honest].mean()),
            "honest_test_loss": float(self.test_loss[self.honest].mean()),
            "consensus_distance": self.consensus_distance,
        }


@dataclass(frozen=True)
class SimResult:
    experiment: Experiment
    history: list[RoundMetrics]
    params: torch.Tensor
    wall_seconds: float

    @property
    def final(self) -> RoundMetrics:
        return self.history[-1]


class Simulation:
    """Holds the ``(N, d)`` state of a run; :meth:`run` drives it round by round."""

    def __init__(self, experiment: Experiment) -> None:
        self.exp = experiment
        self.plan: RoundPlan = make_plan(experiment)
        n = experiment.n
        self.params = experiment.initial.reshape(1, -1).repeat(n, 1)
        self.momentum = torch.zeros_like(self.params) if experiment.training.momentum else None
        self.last_loss = torch.full((n,), float("nan"))
        self.round = 0
        self._nodes = torch.arange(n)
        self._honest_mask = torch.ones(n, dtype=torch.bool)
        self._honest_mask[list(experiment.byzantine)] = False
        omniscient = experiment.scenario.byzantine.knowledge == "omniscient"
        self._geometry: list[tuple[AttackGeometry, int]] = []
        for b in self.plan.attackers:
            targets = self.plan.attacker_targets[b]
            visible = (
                experiment.honest
                if omniscient
                else [j for j in experiment.neighbours(b) if j not in experiment.byzantine]
            )
            geometry = attack_geometry(
                b, visible, targets, experiment.neighbours, experiment.byzantine, experiment.mixing
            )
            f_view = max((int(experiment.f_per_node[i]) for i in targets), default=0)
            self._geometry.append((geometry, f_view))

    def step(self) -> None:
        """Advance one round."""
        exp, plan = self.exp, self.plan
        r = self.round + 1
        trained, self.momentum, self.last_loss = local_steps(
            exp.fmodel,
            self.params,
            self.momentum,
            exp.local,
            self._nodes,
            exp.training,
            exp.seed,
            r,
        )
        table = self._message_table(trained, r)
        new = trained.clone()
        for g in plan.groups:
            # One gather builds the stacked (G, m + 1, d) inputs: own rows come from the
            # table too (rows 0..N-1 are the honest vectors).
            hood = Neighbourhood.of_stacked(table[g.rows], g.weights, g.f)
            new[g.nodes] = aggregate_hood(exp.aggregator, hood)
        if plan.byzantine_nodes.numel():
            new[plan.byzantine_nodes] = torch.sparse.mm(plan.byzantine_mixing, trained)
        self.params = new
        self.round = r

    def _message_table(self, trained: torch.Tensor, r: int) -> torch.Tensor:
        exp, plan = self.exp, self.plan
        if not plan.attackers:
            return trained
        assert exp.attack is not None
        extra = trained.new_empty((plan.extra_rows, trained.shape[1]))

        def vectors(ids: torch.Tensor) -> torch.Tensor:
            return trained.index_select(0, ids)

        for geometry, f_view in self._geometry:
            view = geometry.view(vectors, f_view, exp.seed, r)
            start = plan.attacker_rows[geometry.attacker] - exp.n
            extra[start : start + len(geometry.targets)] = craft_messages(exp.attack, view)
        return torch.cat([trained, extra])

    def evaluate(self) -> RoundMetrics:
        exp = self.exp
        acc, loss = evaluate(exp.fmodel, self.params, exp.test.x, exp.test.y)
        honest = self.params[self._honest_mask]
        mean = honest.mean(0)
        dist = ((self.params - mean) ** 2).sum(1)
        return RoundMetrics(
            round=self.round,
            accuracy=acc,
            test_loss=loss,
            train_loss=self.last_loss.clone(),
            distance_to_mean=dist,
            consensus_distance=float(dist[self._honest_mask].mean()),
            honest=self._honest_mask,
        )

    def run(self, on_round: Callable[[int, RoundMetrics | None], None] | None = None) -> SimResult:
        """Run every round of the scenario; ``on_round(r, metrics_or_None)`` after each."""
        rounds = self.exp.scenario.run.rounds
        every = self.exp.scenario.run.eval_every
        history: list[RoundMetrics] = []
        start = time.perf_counter()
        while self.round < rounds:
            self.step()
            metrics = None
            if self.round % every == 0 or self.round == rounds:
                metrics = self.evaluate()
                history.append(metrics)
            if on_round is not None:
                on_round(self.round, metrics)
        return SimResult(self.exp, history, self.params, time.perf_counter() - start)


def simulate(
    scenario: Scenario,
    on_round: Callable[[int, RoundMetrics | None], None] | None = None,
) -> SimResult:
    """Build the scenario's experiment and simulate it."""
    return Simulation(build_experiment(scenario)).run(on_round)
