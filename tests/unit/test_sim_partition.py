"""Partitions of the graph over ranks, and the halo routes they give (p2pfl.sim.partition, halo)."""

from __future__ import annotations

import networkx as nx
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from p2pfl.config import load_scenario
from p2pfl.errors import ConfigError
from p2pfl.experiment import build_experiment
from p2pfl.sim import Simulation
from p2pfl.sim.halo import halo_routes
from p2pfl.sim.partition import cut_edges, partition_nodes


@given(n=st.integers(1, 200), ranks=st.integers(1, 8))
def test_blocks_are_balanced_and_cover_every_node(n: int, ranks: int) -> None:
    if ranks > n:
        with pytest.raises(ValueError, match="at least one node"):
            partition_nodes(nx.path_graph(n), ranks, seed=0)
        return
    part = partition_nodes(nx.path_graph(n), ranks, seed=0)
    sizes = torch.bincount(part.owner, minlength=ranks)
    assert int(sizes.max() - sizes.min()) <= 1
    assert int(sizes.sum()) == n


def test_a_ring_is_cut_into_contiguous_blocks() -> None:
    part = partition_nodes(nx.cycle_graph(40), 4, seed=0)
    assert part.method == "contiguous"
    assert part.cut_edges == 4  # one edge between consecutive blocks, one wrapping around
    assert part.owner.tolist() == sorted(part.owner.tolist())


def test_shuffled_ids_are_grouped_by_community() -> None:
    # Prepare: 4 cliques of 10 joined in a ring, ids shuffled so blocks of ids cut many edges
    graph = nx.ring_of_cliques(4, 10)
    perm = torch.randperm(40, generator=torch.Generator().manual_seed(3)).tolist()
    shuffled = nx.relabel_nodes(graph, dict(enumerate(perm)))
    # Execute
    part = partition_nodes(shuffled, 4, seed=0)
    # Assert
    assert part.method == "communities"
    assert part.cut_edges == 4  # only the ring edges between cliques
    assert part.cut_edges == cut_edges(shuffled, part.owner)
    assert part.cut_edges < cut_edges(shuffled, torch.arange(40) * 4 // 40)


@settings(max_examples=10, deadline=None)
@given(ranks=st.integers(2, 4), knowledge=st.sampled_from(["local", "omniscient"]))
def test_every_rank_expects_exactly_what_the_others_send(ranks: int, knowledge: str) -> None:
    # Prepare
    exp = build_experiment(
        load_scenario(None, ["byzantine.attack=alie", f"byzantine.knowledge={knowledge}"])
    )
    sim = Simulation(exp)
    owner = partition_nodes(exp.topology.graph, ranks, exp.seed).owner
    geometries = [g for g, _ in sim._geometry]
    # Execute
    routes = [halo_routes(sim.plan, geometries, owner, r, ranks) for r in range(ranks)]
    # Assert: counts agree pairwise, and every row a rank reads it holds
    for p in range(ranks):
        for q in range(ranks):
            if p == q:
                continue
            sent = routes[p].send_nodes.get(q, torch.zeros(0)).numel()
            assert sent == routes[q].recv_nodes.get(p, torch.zeros(0)).numel()
            crafted = routes[p].send_crafted.get(q, torch.zeros(0)).numel()
            assert crafted == routes[q].recv_crafted.get(p, torch.zeros(0)).numel()
        plan = routes[p].plan
        for g in plan.groups:
            assert int(g.rows.min()) >= 0 and int(g.rows.max()) < routes[p].rows
        assert sum(int(g.nodes.numel()) for g in plan.groups) == int(
            sum((owner[g.nodes] == p).sum() for g in sim.plan.groups)
        )
    if knowledge == "omniscient":
        # the ranks of attackers read every honest vector
        for b in exp.byzantine:
            held = routes[int(owner[b])].lookup[torch.tensor(exp.honest)]
            assert bool((held >= 0).all())


def test_one_rank_is_the_single_process() -> None:
    # Prepare: no process group is needed for one rank
    from p2pfl.sim.distributed import Comm, DistributedSimulation

    overrides = ["byzantine.attack=alie", "run.rounds=4", "training.momentum=0.5"]
    exp = build_experiment(load_scenario(None, overrides))
    # Execute
    one = DistributedSimulation(exp, Comm(rank=0, world=1)).run()
    ref = Simulation(exp).run()
    # Assert
    assert torch.equal(one.params, ref.params)
    assert [m.summary() for m in one.history] == [m.summary() for m in ref.history]
    assert one.distributed is not None and one.distributed["halo_bytes_per_round"] == 0
    assert ref.distributed is None


def test_compression_is_refused_off_one_cpu_process() -> None:
    exp = build_experiment(load_scenario(None, ["compression.name=int8", "run.rounds=1"]))
    with pytest.raises(ConfigError, match="compression"):
        Simulation(exp, nodes=torch.arange(8))
