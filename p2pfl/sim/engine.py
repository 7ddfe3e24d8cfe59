"""The vectorized synchronous simulator.

Per round ``r`` (1-based): every node runs local SGD (all nodes at once, see
:func:`p2pfl.learning.local_steps`); vector attackers craft their messages from
what they can see (:class:`p2pfl.rounds.AttackGeometry`); every node that follows
the protocol aggregates its own and its received vectors with the rule, one
batched call per :class:`~p2pfl.sim.plan.AggregationGroup`; Byzantine nodes keep
the mean of their own and their honest neighbours' vectors. Every
``run.eval_every`` rounds and after the last, every node is evaluated on the
held-out test set. The same scenario and seed give the same numbers.

Divergence is a result, not an error. :attr:`SimResult.diverged` records the round
in which each honest node's vector after local training first diverged
(:func:`p2pfl.rounds.diverged`: a non-finite entry, or one beyond ``1e12``). A
model whose parameters are diverged when it is evaluated scores chance
(``1 / num_classes``; losses null): a ReLU network with weights near ``1e30``
still has an arg-max, and may even classify most digits, but its loss is
``~1e34`` and its next training step overflows, so its accuracy would flatter
a defence that failed. A node whose vector is non-finite stops taking part, as a node process does: it
sends nothing, aggregates nothing and keeps its vector, and its neighbours
aggregate without it (with too few inputs left for the rule, they keep their
own). When no honest node is left taking part the run stops early. A non-finite
crafted vector is dropped by its receiver, as a node's boundary rejects it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from p2pfl.aggregators import Neighbourhood
from p2pfl.compression import choco_step
from p2pfl.config import Scenario
from p2pfl.device import resolve_device
from p2pfl.errors import ConfigError
from p2pfl.experiment import Experiment, build_experiment
from p2pfl.learning import local_steps
from p2pfl.personalization import local_score, personalize
from p2pfl.report.outputs import spread
from p2pfl.rounds import (
    AttackGeometry,
    aggregate_hood,
    attack_geometry,
    craft_messages,
    divergence,
    hood_weights,
    knowledge_warnings,
    score,
)
from p2pfl.sim.channel import Channel
from p2pfl.sim.plan import AggregationGroup, RoundPlan, make_plan, plan_on


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
    local_accuracy: torch.Tensor | None = None  # evaluation.local_test
    personalized_accuracy: torch.Tensor | None = None  # final round, personalize_steps > 0

    @property
    def honest_accuracy(self) -> torch.Tensor:
        return self.accuracy[self.honest]

    def summary(self) -> dict[str, float]:
        extra: dict[str, float] = {}
        for prefix, acc in (
            ("local_accuracy", self.local_accuracy),
            ("personalized_accuracy", self.personalized_accuracy),
        ):
            if acc is not None:
                extra |= spread(acc[self.honest].tolist(), prefix)
        return {
            "round": self.round,
            **spread(self.honest_accuracy.tolist(), "honest_accuracy"),
            **extra,
            "honest_train_loss": float(self.train_loss[self.honest].nanmean()),
            "honest_test_loss": float(self.test_loss[self.honest].nanmean()),
            "consensus_distance": self.consensus_distance,
        }


@dataclass(frozen=True)
class SimResult:
    """A finished (or interrupted) run.

    ``diverged`` maps each honest node that diverged to the round it did;
    ``stopped_early`` is the round the run stopped at because every honest node
    had diverged (None otherwise); ``warnings`` are the run's knowledge warnings
    (:func:`p2pfl.rounds.knowledge_warnings`); ``interrupted`` says the run was
    stopped (Ctrl-C) before its last round; ``distributed`` describes the ranks of a
    distributed run (:mod:`p2pfl.sim.distributed`; None in one process).
    ``bytes_sent[i]`` is what node ``i`` sent over the ``rounds`` run: its vector
    messages, header and payload, once per neighbour (:class:`p2pfl.sim.channel.Channel`).
    """

    experiment: Experiment
    history: list[RoundMetrics]
    params: torch.Tensor
    wall_seconds: float
    diverged: dict[int, int] = field(default_factory=dict)
    stopped_early: int | None = None
    warnings: list[str] = field(default_factory=list)
    interrupted: bool = False
    rounds: int = 0  # rounds run (trained), evaluated or not
    distributed: dict[str, Any] | None = None
    bytes_sent: list[int] = field(default_factory=list)

    @property
    def final(self) -> RoundMetrics:
        return self.history[-1]


class Simulation:
    """Holds the ``(N, d)`` state of a run; :meth:`run` drives it round by round.

    :attr:`history` grows as rounds are evaluated, so a caller that stops a run
    (Ctrl-C) still has every evaluation so far (:meth:`result`). ``device`` (default:
    ``run.device``, :mod:`p2pfl.device`) holds the vectors, shards and test set;
    ``nodes`` (default: all) are the nodes whose rows this process holds, which the
    distributed simulator (:mod:`p2pfl.sim.distributed`) sets to a rank's share.
    """

    def __init__(
        self,
        experiment: Experiment,
        nodes: torch.Tensor | None = None,
        device: torch.device | None = None,
    ) -> None:
        self.exp = experiment
        n = experiment.n
        dev = resolve_device(experiment.scenario.run.device) if device is None else device
        self.device = dev
        # Factory calls inside the rules (torch.zeros, torch.arange, ...) land on the device.
        self._on_device: Callable[[], contextlib.AbstractContextManager[Any]] = (
            contextlib.nullcontext if dev.type == "cpu" else lambda: dev
        )
        self._test = (experiment.test.x.to(dev), experiment.test.y.to(dev))
        # The nodes this process simulates (rows of params, in order): all of them here, a
        # rank's share in the distributed simulator (p2pfl.sim.distributed).
        self._nodes = torch.arange(n) if nodes is None else nodes
        data = experiment.local if nodes is None else experiment.local.select(nodes)
        self._data = data.to(dev)
        # this process's nodes' local test splits (evaluation.local_test), on the device
        self._local_tests = (
            None
            if experiment.local_tests is None
            else experiment.local_tests.select(self._nodes).to(dev)
        )
        rows = self._nodes.numel()
        self.params = experiment.initial.to(dev).reshape(1, -1).repeat(rows, 1)
        self.momentum = torch.zeros_like(self.params) if experiment.training.momentum else None
        self.last_loss = torch.full((rows,), float("nan"), device=dev)
        self.round = 0
        self.history: list[RoundMetrics] = []
        self.diverged: dict[int, int] = {}
        self.stopped_early: int | None = None
        self._honest_mask = torch.ones(n, dtype=torch.bool)
        self._honest_mask[list(experiment.byzantine)] = False
        self._omniscient = experiment.scenario.byzantine.knowledge == "omniscient"
        self._muted: frozenset[int] = frozenset()
        if experiment.compression.active and (nodes is not None or dev.type != "cpu"):
            raise ConfigError(
                "compression: the distributed simulator and run.device other than 'cpu' "
                "do not support compression yet; run it in one process on the CPU"
            )
        self.channel = Channel(experiment)
        self._replan()
        attack = experiment.attack
        self.warnings: list[str] = (
            knowledge_warnings(
                attack, [g for g, _ in self._geometry], experiment.scenario.byzantine.knowledge
            )
            if attack is not None and attack.kind == "vector"
            else []
        )

    def _replan(self) -> None:
        """Routing and attack geometry for the current set of muted (diverged) nodes."""
        exp, muted = self.exp, self._muted
        self.plan: RoundPlan = make_plan(exp, muted)
        # The plan in the coordinates of this process's message table (the same plan here).
        self.table_plan: RoundPlan = plan_on(self.plan, self.device)
        # nodes whose vector goes out this round (vector attackers: to Byzantine neighbours)
        self._senders = sorted((exp.follows_protocol | set(exp.vector_attackers)) - muted)
        # direct compression: own vectors are the trained ones, inputs the decoded
        # messages, read from one table [trained; messages] (inputs shifted by N)
        self._groups = (
            self.table_plan.groups
            if self.channel.own_in_table
            else [_shift_inputs(g, exp.n) for g in self.table_plan.groups]
        )
        alive = [i for i in exp.honest if i not in muted]
        self._alive_honest = torch.tensor(alive, dtype=torch.int64)
        self._geometry: list[tuple[AttackGeometry, int]] = []
        for b in self.plan.attackers:
            targets = self.plan.attacker_targets[b]
            visible = (
                alive
                if self._omniscient
                else [j for j in exp.neighbours(b) if j not in exp.byzantine and j not in muted]
            )
            geometry = attack_geometry(
                b, visible, targets, exp.neighbours, exp.byzantine, exp.mixing
            )
            f_view = max((int(exp.f_per_node[i]) for i in targets), default=0)
            self._geometry.append((geometry, f_view))

    @property
    def all_diverged(self) -> bool:
        """No honest node is left taking part (every one went non-finite)."""
        return self._alive_honest.numel() == 0

    def step(self) -> None:
        """Advance one round."""
        exp = self.exp
        r = self.round + 1
        trained, self.momentum, self.last_loss = local_steps(
            exp.fmodel,
            self.params,
            self.momentum,
            self._data,
            self._nodes,
            exp.training,
            exp.seed,
            r,
        )
        self._track_divergence(trained, r)
        seen = self._sent_rows(trained, r)
        table, dropped = self._message_table(trained, seen, r)
        if not self.channel.own_in_table:
            table = torch.cat([trained, table])
            if dropped is not None:
                dropped = torch.cat([torch.zeros(self.exp.n, dtype=torch.bool), dropped])
        new = trained.clone()  # muted nodes keep their own vector
        plan = self.table_plan
        with self._on_device():
            for g in self._groups:
                combined = self._aggregate_group(g, table, dropped)
                if self.channel.choco:  # the rule acted on the public copies
                    combined = choco_step(
                        trained[g.nodes], combined, seen[g.nodes], self.exp.compression.gamma
                    )
                new[self._position(g.nodes)] = combined
        if plan.byzantine_nodes.numel():
            mix = plan.byzantine_mixing
            # a Byzantine node's own vector and what it holds of its honest neighbours
            held = table[: mix.shape[1]]
            if seen is not trained:
                held = seen.clone()
                held[plan.byzantine_nodes] = trained[plan.byzantine_nodes]
            new[plan.byzantine_nodes] = torch.sparse.mm(mix, held)
        self.params = new
        self.round = r

    def _track_divergence(self, trained: torch.Tensor, r: int) -> None:
        """Record newly diverged honest nodes; mute the protocol's nodes that went non-finite."""
        bad, broken = self._divergence(trained)
        if not bool(bad.any()):
            return
        exp = self.exp
        for i in bad.nonzero().flatten().tolist():
            if i not in exp.byzantine and i not in self.diverged:
                self.diverged[i] = r
        newly = [
            i
            for i in broken.nonzero().flatten().tolist()
            if i in exp.follows_protocol and i not in self._muted
        ]
        if newly:
            self._muted = self._muted | frozenset(newly)
            self._replan()

    def _position(self, nodes: torch.Tensor) -> torch.Tensor:
        """The rows of :attr:`params` that hold ``nodes`` (global ids)."""
        return nodes

    def _divergence(self, trained: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(diverged, non_finite)`` masks over every node (:func:`p2pfl.rounds.divergence`)."""
        return divergence(trained)

    def _honest_mean(self) -> torch.Tensor:
        """``(d,)`` mean of the current vectors of the honest nodes still taking part.

        Summed in float64, so the result (rounded to float32) does not depend on the
        order of the sum: the distributed simulator adds per-rank sums and gets the same
        vector, and a coordinate every honest node shares is its exact value (Fang's
        direction ``sign(mean - before)`` is then 0 there, not an ulp's sign).
        """
        rows = self.params[self._alive_honest]
        return (rows.sum(0, dtype=torch.float64) / rows.shape[0]).to(self.params.dtype)

    def _every_node(self, per_row: torch.Tensor) -> torch.Tensor:
        """``(k, N)``: ``(k, rows)`` per-row values of this process's nodes, for every node."""
        return per_row

    def _message_table(
        self, trained: torch.Tensor, seen: torch.Tensor, r: int
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The round's message table, and which of its rows receivers drop (None: none).

        Rows ``0..N-1`` are ``seen``, what the neighbours hold of each sender (the
        trained vectors without compression; a muted node's row is never read);
        then one row per (attacker, target), what the target holds of the attacker
        after its crafted message. Rows that are not finite are dropped, as a node's
        boundary rejects them. An attacker crafts from its own trained vector and what
        it holds of the honest nodes.
        """
        exp, plan = self.exp, self.plan
        if not plan.attackers:
            return seen, None
        assert exp.attack is not None
        extra = trained.new_empty((plan.extra_rows, trained.shape[1]))
        attacker = -1

        def vectors(ids: torch.Tensor) -> torch.Tensor:
            rows = seen.index_select(0, ids)
            if seen is not trained:
                rows[ids == attacker] = trained[attacker]
            return rows.cpu()  # attacks craft on the CPU (their generators are)

        # Fang's reference: the model the honest vectors started this round from, as far
        # as the attacker knows it (omniscient: the honest mean; local: its own state).
        honest_before = (
            self._honest_mean() if self._omniscient and self._alive_honest.numel() else None
        )
        for geometry, f_view in self._geometry:
            attacker = geometry.attacker
            before = self.params[attacker] if honest_before is None else honest_before
            view = geometry.view(vectors, f_view, exp.seed, r, before=before.cpu())
            start = plan.attacker_rows[attacker] - exp.n
            crafted = craft_messages(exp.attack, view)
            extra[start : start + len(geometry.targets)] = self.channel.crafted_rows(
                attacker, geometry.targets, crafted, r
            )
        table = torch.cat([seen, extra])
        bad_extra = ~torch.isfinite(extra).all(1).cpu()
        if not bool(bad_extra.any()):
            return table, None
        dropped = torch.zeros(table.shape[0], dtype=torch.bool)
        dropped[exp.n :] = bad_extra
        return table, dropped

    def _aggregate_group(
        self, g: AggregationGroup, table: torch.Tensor, dropped: torch.Tensor | None
    ) -> torch.Tensor:
        """``(G, d)``: the rule for a group; members that lost an input aggregate without it."""
        agg = self.exp.aggregator
        hit = dropped[g.rows].any(1) if dropped is not None else None
        if hit is None or not bool(hit.any()):
            hood = Neighbourhood.of_stacked(table[g.rows], g.weights, g.f, g.byzantine)
            return aggregate_hood(agg, hood)
        out = table.new_empty((g.nodes.numel(), table.shape[1]))
        ok = ~hit
        if bool(ok.any()):
            hood = Neighbourhood.of_stacked(table[g.rows[ok]], g.weights[ok], g.f, g.byzantine[ok])
            out[ok] = aggregate_hood(agg, hood)
        assert dropped is not None
        for k in hit.nonzero().flatten().tolist():
            out[k] = self._aggregate_without(g, k, table, dropped)
        return out

    def _aggregate_without(
        self, g: AggregationGroup, k: int, table: torch.Tensor, dropped: torch.Tensor
    ) -> torch.Tensor:
        """Member ``k`` of ``g`` aggregates what arrived; too few inputs: it keeps its own."""
        exp = self.exp
        keep = ~dropped[g.rows[k, 1:]]
        senders = g.senders[k][keep].tolist()
        own = table[g.rows[k, 0]]
        if 1 + len(senders) < exp.aggregator.min_inputs(g.f):
            return own.clone()
        hood = Neighbourhood(
            own=own.unsqueeze(0),
            received=table[g.rows[k, 1:][keep]].unsqueeze(0),
            weights=hood_weights(exp.mixing, int(g.nodes[k]), senders).to(own.device).unsqueeze(0),
            f=g.f,
            byzantine=g.byzantine[k][keep].unsqueeze(0),
        )
        return aggregate_hood(exp.aggregator, hood)[0]

    def evaluate(self) -> RoundMetrics:
        exp = self.exp
        test_x, test_y = self._test
        acc, loss = score(exp.fmodel, self.params, test_x, test_y, exp.train.num_classes)
        dist = ((self.params - self._honest_mean()) ** 2).sum(1)
        acc, loss, train_loss, dist = self._every_node(
            torch.stack([acc, loss, self.last_loss, dist]).cpu()
        )
        alive = self._honest_mask.clone()
        alive[list(self._muted)] = False
        dist[~alive & self._honest_mask] = float("nan")
        local = personalized = None
        tests = self._local_tests
        if tests is not None:
            classes = exp.train.num_classes
            local = self._every_node(
                local_score(exp.fmodel, self.params, tests, classes).reshape(1, -1).cpu()
            )[0]
            cfg = exp.scenario.evaluation
            if cfg.personalize_steps and self.round == exp.scenario.run.rounds:
                tuned = personalize(
                    exp.fmodel,
                    self.params,
                    self._data,
                    self._nodes,
                    exp.training,
                    cfg.personalize_steps,
                    exp.seed,
                    self.round,
                    cfg.personalize_lr,
                )
                personalized = self._every_node(
                    local_score(exp.fmodel, tuned, tests, classes).reshape(1, -1).cpu()
                )[0]
        return RoundMetrics(
            round=self.round,
            accuracy=acc,
            test_loss=loss,
            train_loss=train_loss.clone(),
            distance_to_mean=dist,
            consensus_distance=float(dist[alive].mean()) if bool(alive.any()) else float("nan"),
            honest=self._honest_mask,
            local_accuracy=local,
            personalized_accuracy=personalized,
        )

    def result(self, wall_seconds: float, interrupted: bool = False) -> SimResult:
        """The run so far as a :class:`SimResult` (the evaluations in :attr:`history`)."""
        return SimResult(
            self.exp,
            list(self.history),
            self._all_params().cpu(),
            wall_seconds,
            diverged=dict(self.diverged),
            stopped_early=self.stopped_early,
            warnings=list(self.warnings),
            interrupted=interrupted,
            rounds=self.round,
            distributed=self._distribution(),
            bytes_sent=self._bytes_sent(),
        )

    def _distribution(self) -> dict[str, Any] | None:
        """How the run was spread over ranks (None: one process)."""
        return None

    def _sent_rows(self, trained: torch.Tensor, r: int) -> torch.Tensor:
        """What the neighbours hold of each sender after round ``r`` (bytes counted)."""
        return self.channel.sender_rows(trained, r, self._senders)

    def _bytes_sent(self) -> list[int]:
        """Per node, the bytes it sent so far (:class:`~p2pfl.sim.channel.Channel`)."""
        return list(self.channel.bytes_sent)

    def _all_params(self) -> torch.Tensor:
        """``(N, d)``: every node's current vector (gathered from every rank when distributed)."""
        return self.params

    def run(self, on_round: Callable[[int, RoundMetrics | None], None] | None = None) -> SimResult:
        """Run every round of the scenario; ``on_round(r, metrics_or_None)`` after each.

        Stops early, after evaluating, once every honest node has diverged.
        """
        rounds = self.exp.scenario.run.rounds
        every = self.exp.scenario.run.eval_every
        start = time.perf_counter()
        while self.round < rounds:
            self.step()
            done = self.all_diverged
            metrics = None
            if self.round % every == 0 or self.round == rounds or done:
                metrics = self.evaluate()
                self.history.append(metrics)
            if on_round is not None:
                on_round(self.round, metrics)
            if done:
                self.stopped_early = self.round if self.round < rounds else None
                break
        return self.result(time.perf_counter() - start)


def _shift_inputs(g: AggregationGroup, n: int) -> AggregationGroup:
    """``g`` reading its inputs from rows ``N..`` of ``[trained; messages]``."""
    rows = g.rows.clone()
    rows[:, 1:] += n
    return dataclasses.replace(g, rows=rows)


def simulate(
    scenario: Scenario,
    on_round: Callable[[int, RoundMetrics | None], None] | None = None,
) -> SimResult:
    """Build the scenario's experiment and simulate it."""
    return Simulation(build_experiment(scenario)).run(on_round)
