"""Everything a scenario describes, built once and shared by the simulator and the node.

:func:`build_experiment` turns a :class:`~p2pfl.config.Scenario` into concrete
objects (data shards, model, topology, mixing matrix, rule, attack) and checks the
combination: more Byzantine nodes than nodes, or an ``f`` too large for some honest
node's neighbourhood, is a :class:`~p2pfl.errors.ConfigError` that names the key.
Both :mod:`p2pfl.sim` and :mod:`p2pfl.node` start from the same ``Experiment``, so
a node process and the simulator see identical shards, weights and initial
parameters for the same scenario and seed.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import cached_property

import networkx as nx
import numpy as np
import torch
from torch import nn

from p2pfl.aggregators import Aggregator, make_aggregator
from p2pfl.attacks import Attack, make_attack
from p2pfl.compression import CompressionSpec, make_compressor
from p2pfl.config import Scenario
from p2pfl.data import PARTITIONERS, Dataset, load_dataset, split_train_test
from p2pfl.errors import ConfigError
from p2pfl.learning import FunctionalModel, LocalData, TrainingSpec
from p2pfl.models import build_model
from p2pfl.params import flatten, frozen_names
from p2pfl.personalization import LocalTests, draw_local_tests
from p2pfl.privacy.accounting import resolve as resolve_privacy
from p2pfl.seeding import derive_seed, generator_for
from p2pfl.topology import PLACEMENTS, TOPOLOGIES, Topology, load_topology
from p2pfl.topology.mixing import MixingWeights, mixing_weights


@dataclass(frozen=True)
class Experiment:
    """The concrete objects of one scenario (see the module docstring)."""

    scenario: Scenario
    train: Dataset
    test: Dataset
    parts: list[np.ndarray]
    local: LocalData
    model: nn.Module
    initial: torch.Tensor
    topology: Topology
    mixing: MixingWeights  # by rows: O(N + E), not the dense (N, N) matrix
    byzantine: frozenset[int]
    aggregator: Aggregator
    attack: Attack | None
    f_per_node: torch.Tensor
    training: TrainingSpec
    compression: CompressionSpec
    local_tests: LocalTests | None = None

    @property
    def n(self) -> int:
        return self.topology.graph.number_of_nodes()

    @property
    def seed(self) -> int:
        return self.scenario.run.seed

    @cached_property
    def fmodel(self) -> FunctionalModel:
        return FunctionalModel(self.model)

    @property
    def parameters(self) -> int:
        """Values in the model's whole state (``summary.json``: ``"parameters"``)."""
        return self.fmodel.layout.size

    @property
    def shared_parameters(self) -> int:
        """Values each node trains and exchanges: the state less frozen entries."""
        return int(self.initial.numel())

    @cached_property
    def honest(self) -> list[int]:
        return [i for i in range(self.n) if i not in self.byzantine]

    def neighbours(self, i: int) -> list[int]:
        return sorted(self.topology.graph.neighbors(i))

    @property
    def vector_attackers(self) -> list[int]:
        """Byzantine nodes that send crafted vectors (not silent, not data poisoners)."""
        if self.attack is None or self.attack.kind != "vector":
            return []
        return sorted(self.byzantine)

    @property
    def silent(self) -> frozenset[int]:
        if self.attack is not None and self.attack.kind == "silent":
            return self.byzantine
        return frozenset()

    @property
    def follows_protocol(self) -> frozenset[int]:
        """Nodes that aggregate with the rule: the honest ones and data poisoners."""
        if self.attack is not None and self.attack.kind == "data":
            return frozenset(range(self.n))
        return frozenset(self.honest)


def keep_classes(data: Dataset, classes: list[int]) -> Dataset:
    """The examples of ``data`` whose label is in ``classes`` (``data.classes``)."""
    bad = [c for c in classes if c >= data.num_classes]
    if bad:
        raise ConfigError(
            f"data.classes: {bad} are not labels of {data.name} (0..{data.num_classes - 1})"
        )
    keep = torch.isin(data.y, torch.tensor(classes, dtype=torch.int64))
    return dataclasses.replace(data, x=data.x[keep], y=data.y[keep])


def build_topology(scenario: Scenario) -> Topology:
    cfg = scenario.topology
    if cfg.file:
        return load_topology(scenario.resolve_path(cfg.file))
    builder = TOPOLOGIES.bind(
        cfg.kind, cfg.params, "topology.params", reserved={"seed": "run.seed"}
    )
    graph = builder(cfg.n, seed=derive_seed(scenario.run.seed, 0x7090))
    return Topology(graph=graph, name=cfg.kind)


def choose_byzantine(scenario: Scenario, topology: Topology) -> frozenset[int]:
    cfg = scenario.byzantine
    n = topology.graph.number_of_nodes()
    if topology.byzantine:
        chosen = frozenset(topology.byzantine)
    elif cfg.nodes is not None:
        chosen = frozenset(cfg.nodes)
        bad = sorted(i for i in chosen if not 0 <= i < n)
        if bad:
            raise ConfigError(f"byzantine.nodes: {bad} are not nodes of a {n}-node topology")
    else:
        if cfg.count > n:
            raise ConfigError(
                f"byzantine.count: {cfg.count} Byzantine nodes but the topology has {n} nodes"
            )
        if cfg.count == 0:
            return frozenset()
        place = PLACEMENTS.bind(
            cfg.placement,
            cfg.placement_params,
            "byzantine.placement_params",
            reserved={"seed": "run.seed"},
        )
        chosen = frozenset(
            place(topology.graph, cfg.count, seed=derive_seed(scenario.run.seed, 0xB42))
        )
    if len(chosen) >= n:
        raise ConfigError(f"byzantine: all {n} nodes are Byzantine; at least one must be honest")
    return chosen


def _per_node_f(scenario: Scenario, graph: nx.Graph, byzantine: frozenset[int]) -> torch.Tensor:
    n = graph.number_of_nodes()
    if scenario.aggregator.f == "auto":
        return torch.tensor(
            [sum(1 for j in graph.neighbors(i) if j in byzantine) for i in range(n)],
            dtype=torch.int64,
        )
    return torch.full((n,), int(scenario.aggregator.f), dtype=torch.int64)


def check_rule_fits(
    exp_graph: nx.Graph, agg: Aggregator, f: torch.Tensor, nodes: list[int], silent: frozenset[int]
) -> None:
    """Every node in ``nodes`` must receive enough vectors for its rule and ``f``."""
    for i in nodes:
        inputs = 1 + sum(1 for j in exp_graph.neighbors(i) if j not in silent)
        need = agg.min_inputs(int(f[i]))
        if inputs < need:
            raise ConfigError(
                f"aggregator.f: {agg.name} with f={int(f[i])} needs at least {need} vectors, "
                f"but node {i} has {inputs} (itself and {inputs - 1} neighbours); "
                "lower aggregator.f or use a denser topology"
            )


def build_experiment(scenario: Scenario) -> Experiment:
    """Build and check every object the scenario names."""
    seed = scenario.run.seed
    topology = build_topology(scenario)
    n = topology.graph.number_of_nodes()
    byzantine = choose_byzantine(scenario, topology)

    data_params = dict(scenario.data.params)
    if isinstance(data_params.get("path"), str):  # relative to the scenario file
        data_params["path"] = str(scenario.resolve_path(data_params["path"]))
    full, predefined_test = load_dataset(scenario.data.source, data_params)
    if scenario.data.classes:
        full = keep_classes(full, scenario.data.classes)
        if predefined_test is not None:
            predefined_test = keep_classes(predefined_test, scenario.data.classes)
    if predefined_test is None:
        train, test = split_train_test(full, scenario.data.test_fraction, derive_seed(seed, 0xDA7A))
    else:
        train, test = full, predefined_test
    partition = PARTITIONERS.bind(
        scenario.data.partition,
        scenario.data.partition_params,
        "data.partition_params",
        reserved={"seed": "run.seed"},
    )
    parts = partition(train.y.numpy(), n, seed=derive_seed(seed, 0x9A27))

    attack = (
        make_attack(scenario.byzantine.attack, scenario.byzantine.params) if byzantine else None
    )
    shards = []
    for i, idx in enumerate(parts):
        index = torch.as_tensor(np.asarray(idx), dtype=torch.int64)
        x, y = train.x[index], train.y[index]
        if attack is not None and attack.kind == "data" and i in byzantine:
            x, y = attack.poison(x, y, train.num_classes, generator_for(seed, i, 0xD0))
        shards.append((x, y))
    local = LocalData.from_shards(shards)

    init = scenario.resolve_path(scenario.model.init) if scenario.model.init else None
    model = build_model(
        scenario.model.name,
        scenario.model.params,
        tuple(train.x.shape[1:]),
        train.num_classes,
        seed=derive_seed(seed, 0x30DE1),
        init_path=str(init) if init else None,
        frozen=scenario.model.freeze,
    )
    if scenario.privacy.mechanism == "dp_sgd":
        running = sorted(n for n, _ in model.named_buffers() if n not in frozen_names(model))
        if running:
            raise ConfigError(
                f"privacy.mechanism = 'dp_sgd' needs per-sample gradients, and model "
                f"{scenario.model.name!r} has running statistics ({', '.join(running[:3])}): "
                "BatchNorm mixes the samples of a batch; use LayerNorm or GroupNorm, or "
                "freeze those layers (model.freeze)"
            )
    evaluation = scenario.evaluation
    local_tests = (
        draw_local_tests(
            [train.y.numpy()[np.asarray(p, dtype=np.int64)] for p in parts],
            train.num_classes,
            test.x,
            test.y,
            evaluation.local_test_size,
            derive_seed(seed, 0x10CA1),
        )
        if evaluation.local_test
        else None
    )
    aggregator = make_aggregator(
        scenario.aggregator.name, scenario.aggregator.params, pre=tuple(scenario.aggregator.pre)
    )
    f = _per_node_f(scenario, topology.graph, byzantine)
    comp = scenario.compression
    compressor = make_compressor(comp.name, comp.params)
    d = int(flatten(model).numel())
    gamma = compressor.auto_gamma(d) if comp.gamma == "auto" else float(comp.gamma)
    compression = CompressionSpec(compressor, comp.scheme, comp.error_feedback, gamma)
    exp = Experiment(
        scenario=scenario,
        train=train,
        test=test,
        parts=parts,
        local=local,
        model=model,
        initial=flatten(model, exclude=frozen_names(model)),
        topology=topology,
        mixing=mixing_weights(topology.graph, scenario.topology.mixing),
        byzantine=byzantine,
        aggregator=aggregator,
        attack=attack,
        f_per_node=f,
        training=TrainingSpec(
            local_steps=scenario.training.local_steps,
            batch_size=scenario.training.batch_size,
            lr=scenario.training.lr,
            momentum=scenario.training.momentum,
            weight_decay=scenario.training.weight_decay,
            privacy=resolve_privacy(
                scenario.privacy,
                local.sizes,
                scenario.training.batch_size,
                scenario.run.rounds * scenario.training.local_steps,
            ),
        ),
        compression=compression,
        local_tests=local_tests,
    )
    check_rule_fits(topology.graph, aggregator, f, sorted(exp.follows_protocol), exp.silent)
    return exp
