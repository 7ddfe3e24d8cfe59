"""What one node process needs of a scenario: its own slice of the :class:`~p2pfl.experiment.Experiment`.

:meth:`NodeSetup.from_experiment` cuts node ``k``'s share out of the experiment
the simulator uses (its shard, its row of the mixing matrix, its ``f``, its role),
so a node process computes exactly what the simulator computes for row ``k``.
The node itself (:class:`p2pfl.node.Node`) receives a ``NodeSetup`` and a
transport; it never builds anything from a scenario.

Roles (what the node does each round, see :mod:`p2pfl.rounds`):

``honest``   train, send to every neighbour, aggregate with the rule.
``data``     a data-poisoning Byzantine node: trains on its poisoned shard, then
             behaves exactly like an honest node.
``vector``   a vector attacker: trains, waits for its neighbours' vectors, builds
             an :class:`~p2pfl.attacks.AttackView` from what it received (local
             knowledge) and sends each honest neighbour its crafted row; keeps
             :func:`~p2pfl.rounds.byzantine_state`.
``silent``   a Byzantine node that sends no vectors (it still says hello and
             keeps :func:`~p2pfl.rounds.byzantine_state`).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

import torch

from p2pfl.aggregators import Aggregator
from p2pfl.attacks import Attack
from p2pfl.compression import CompressionSpec
from p2pfl.config import NetworkConfig
from p2pfl.device import resolve_device
from p2pfl.errors import ConfigError
from p2pfl.experiment import Experiment
from p2pfl.learning import FunctionalModel, LocalData, TrainingSpec
from p2pfl.personalization import LocalTests
from p2pfl.topology.mixing import Mixing

Role = Literal["honest", "data", "vector", "silent"]


@dataclass(frozen=True, eq=False)
class NodeSetup:
    """Everything node ``node_id`` computes with; built once, read-only afterwards.

    ``adjacency`` holds every node's sorted neighbours (an attacker needs its
    targets' neighbourhoods to build its view); ``f_by_node`` is each node's
    ``f``; ``attack_f`` is the ``f`` an attacker assumes of its targets (the
    largest among them, as in the simulator).
    """

    node_id: int
    role: Role
    neighbours: tuple[int, ...]
    adjacency: Mapping[int, tuple[int, ...]]
    byzantine: frozenset[int]
    fmodel: FunctionalModel
    initial: torch.Tensor  # (d,) float32
    local: LocalData  # this node's shard only
    training: TrainingSpec
    test_x: torch.Tensor
    test_y: torch.Tensor
    num_classes: int
    mixing: Mixing  # W by rows (or the dense (n, n) matrix)
    aggregator: Aggregator
    f: int
    attack: Attack | None
    attack_f: int
    seed: int
    rounds: int
    eval_every: int
    network: NetworkConfig
    compression: CompressionSpec
    # where it trains and evaluates (run.device)
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    local_test: LocalTests | None = None  # this node's row (evaluation.local_test)
    personalize_steps: int = 0
    personalize_lr: float = 0.0

    def __post_init__(self) -> None:
        if self.node_id in self.neighbours:
            raise ConfigError(f"node {self.node_id} lists itself among its neighbours")
        if list(self.neighbours) != sorted(set(self.neighbours)):
            raise ConfigError(f"node {self.node_id}: neighbours must be sorted and distinct")
        if self.role in ("vector", "data") and self.attack is None:
            raise ConfigError(f"node {self.node_id}: role {self.role!r} needs an attack")
        if self.initial.ndim != 1 or self.initial.dtype != torch.float32:
            raise ConfigError("NodeSetup.initial must be a float32 vector (d,)")
        if int(self.local.sizes.numel()) != 1:
            raise ConfigError("NodeSetup.local must hold exactly one shard (this node's)")

    @property
    def d(self) -> int:
        return int(self.initial.numel())

    @property
    def fingerprint(self) -> str:
        return self.fmodel.fingerprint()

    @property
    def is_byzantine(self) -> bool:
        return self.node_id in self.byzantine

    @property
    def honest_neighbours(self) -> tuple[int, ...]:
        return tuple(j for j in self.neighbours if j not in self.byzantine)

    @property
    def startup_rounds(self) -> int:
        """Rounds whose deadline also allows for start-up skew: eccentricity + 1.

        A node that starts its rounds late (it waited for a late neighbour's hello)
        delays its neighbours' round 2, their neighbours' round 3, and so on: a
        start-up delay reaches a node ``k`` hops away in round ``k + 1``.
        """
        seen = {self.node_id}
        frontier = [self.node_id]
        hops = 0
        while frontier:
            frontier = [j for i in frontier for j in self.adjacency[i] if j not in seen]
            seen.update(frontier)
            hops += bool(frontier)
        return hops + 1

    def evaluates_at(self, round_: int) -> bool:
        """Every ``eval_every`` rounds and after the last, as the simulator does."""
        return round_ % self.eval_every == 0 or round_ == self.rounds

    @classmethod
    def from_experiment(cls, exp: Experiment, node_id: int) -> NodeSetup:
        """Node ``node_id``'s share of ``exp``; ConfigError if it cannot run as a process."""
        if not 0 <= node_id < exp.n:
            raise ConfigError(f"--id {node_id}: the topology has nodes 0..{exp.n - 1}")
        scenario = exp.scenario
        if exp.byzantine and scenario.byzantine.knowledge == "omniscient":
            raise ConfigError(
                "byzantine.knowledge: 'omniscient' attacks need every honest node's vector, "
                "which only the simulator has; use 'local' for networked runs"
            )
        if exp.aggregator.needs_oracle:
            raise ConfigError(
                f"aggregator {exp.aggregator.name!r} with parameters "
                f"{exp.aggregator.parameters} needs to know which of its inputs are Byzantine, "
                "which only the simulator knows; networked runs need a rule without that "
                "oracle (e.g. ClippedGossip's radius 'fixed' or 'adaptive')"
            )
        device = resolve_device(scenario.run.device)
        if exp.compression.active and device.type != "cpu":
            raise ConfigError(
                "compression: a node with run.device other than 'cpu' does not support "
                "compression yet; set run.device = 'cpu'"
            )
        role = _role(exp, node_id)
        adjacency = {i: tuple(exp.neighbours(i)) for i in range(exp.n)}
        mine = adjacency[node_id]
        attack_f = max((int(exp.f_per_node[i]) for i in mine), default=0)
        return cls(
            node_id=node_id,
            role=role,
            neighbours=mine,
            adjacency=adjacency,
            byzantine=exp.byzantine,
            # own copy: functional_call swaps a module's tensors while it runs, so nodes
            # sharing one process (tests) must not share a module across threads
            fmodel=FunctionalModel(copy.deepcopy(exp.model)),
            initial=exp.initial.clone(),
            local=exp.local.select(torch.tensor([node_id])).to(device),
            training=exp.training,
            test_x=exp.test.x.to(device),
            test_y=exp.test.y.to(device),
            num_classes=exp.train.num_classes,
            mixing=exp.mixing,
            aggregator=exp.aggregator,
            f=int(exp.f_per_node[node_id]),
            attack=exp.attack,
            attack_f=attack_f,
            seed=exp.seed,
            rounds=scenario.run.rounds,
            eval_every=scenario.run.eval_every,
            network=scenario.network,
            compression=exp.compression,
            device=device,
            local_test=(
                exp.local_tests.select(torch.tensor([node_id])).to(device)
                if exp.local_tests is not None
                else None
            ),
            personalize_steps=scenario.evaluation.personalize_steps,
            personalize_lr=scenario.evaluation.personalize_lr,
        )


def _role(exp: Experiment, node_id: int) -> Role:
    if node_id not in exp.byzantine or exp.attack is None:
        return "honest"
    kind = exp.attack.kind
    if kind == "data":
        return "data"
    if kind == "silent":
        return "silent"
    return "vector"
