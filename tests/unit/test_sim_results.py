"""What a simulation reports beyond accuracy: divergence as a result, knowledge warnings."""

from __future__ import annotations

from pathlib import Path

import networkx as nx
import pytest
import torch

from p2pfl.config import load_scenario
from p2pfl.rounds import DIVERGENCE_BOUND, diverged, divergence
from p2pfl.sim import simulate
from p2pfl.sim.outputs import sim_summary
from p2pfl.topology import Topology, save_topology

pytestmark = pytest.mark.timeout(120)

TINY = [
    "run.rounds=30",
    "run.eval_every=5",
    "topology.n=8",
    "byzantine.count=2",
    "model.params.hidden=[8]",
]


def test_diverged_marks_non_finite_and_exploding_rows() -> None:
    x = torch.zeros(4, 3)
    x[1, 2] = float("nan")
    x[2, 0] = -2 * DIVERGENCE_BOUND
    x[3, 1] = float("inf")
    assert diverged(x).tolist() == [False, True, True, True]
    _, broken = divergence(x)
    assert broken.tolist() == [False, True, False, True]
    assert not bool(diverged(torch.zeros(3)))


def test_an_exploding_run_is_a_result_not_an_error() -> None:
    """Mean under a x1e6 scaling attack: every honest node blows up, the run stops early."""
    s = load_scenario(
        None,
        [*TINY, "aggregator.name=mean", "byzantine.attack=scaled", "byzantine.params.lam=1e6"],
    )
    result = simulate(s)
    honest = sorted(result.experiment.honest)
    assert sorted(result.diverged) == honest
    assert all(1 <= r <= 30 for r in result.diverged.values())
    assert result.stopped_early is not None and result.stopped_early < 30
    assert result.final.round == result.stopped_early
    assert torch.allclose(result.final.honest_accuracy, torch.tensor(0.1))  # chance, 10 classes
    summary = sim_summary(result)
    assert summary["diverged_nodes"] == {str(i): result.diverged[i] for i in honest}
    assert summary["honest_accuracy_mean"] == pytest.approx(0.1)
    assert summary["stopped_early"] == result.stopped_early and not summary["interrupted"]


def test_a_healthy_run_reports_no_divergence() -> None:
    result = simulate(load_scenario(None, [*TINY[1:], "run.rounds=5"]))
    assert result.diverged == {} and result.stopped_early is None
    assert sim_summary(result)["diverged_nodes"] == {}


def paper_ring(tmp_path: Path) -> Path:
    """He et al.'s malicious ring: 5 honest nodes on a cycle, each with 2 Byzantine leaves."""
    graph = nx.cycle_graph(5)
    for i in range(5):
        graph.add_edges_from([(i, i + 5), (i, i + 10)])
    path = tmp_path / "ring.toml"
    save_topology(Topology(graph=graph, byzantine=frozenset(range(5, 15)), name="ring"), path)
    return path


@pytest.mark.parametrize(
    ("attack", "knowledge", "warned"),
    [
        ("alie", "local", "fewer than 2 honest vectors"),
        ("min_max", "local", "fewer than 2 honest vectors"),
        ("dissensus", "local", "sees none of the target's honest neighbours"),
        ("alie", "omniscient", None),
        ("dissensus", "omniscient", None),
        ("ipm", "local", None),
        ("sign_flip", "local", None),
    ],
)
def test_knowledge_too_small_to_attack_is_warned_once(
    tmp_path: Path, attack: str, knowledge: str, warned: str | None
) -> None:
    s = load_scenario(
        None,
        [
            "run.rounds=2",
            "run.eval_every=2",
            "model.params.hidden=[8]",
            f"topology.file={paper_ring(tmp_path)}",
            "aggregator.name=gossip",
            f"byzantine.attack={attack}",
            f"byzantine.knowledge={knowledge}",
        ],
    )
    result = simulate(s)
    if warned is None:
        assert result.warnings == []
    else:
        assert len(result.warnings) == 1 and warned in result.warnings[0]
        assert "10 of 10" in result.warnings[0]
        assert sim_summary(result)["warnings"] == result.warnings


def test_local_alie_on_the_paper_ring_sends_the_targets_own_vector(tmp_path: Path) -> None:
    """Why the warning matters: with one honest vector ALIE changes nothing at all."""
    common = [
        "run.rounds=3",
        "run.eval_every=3",
        "model.params.hidden=[8]",
        f"topology.file={paper_ring(tmp_path)}",
        "aggregator.name=gossip",
        "byzantine.knowledge=local",
    ]
    alie = simulate(
        load_scenario(None, [*common, "byzantine.attack=alie", "byzantine.params.z=10.0"])
    )
    mimic = simulate(load_scenario(None, [*common, "byzantine.attack=mimic"]))
    assert torch.equal(alie.params[:5], mimic.params[:5])
