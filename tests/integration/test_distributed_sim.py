"""The distributed simulator over real processes: torchrun ranks joined by gloo on 127.0.0.1.

Same scenario, same seed: the same numbers as the single-process simulator (honest
accuracies to 1e-6, final vectors to 1e-5), with attackers whose targets sit on
other ranks, omniscient knowledge, and nodes that diverge mid-run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from p2pfl.config import load_scenario
from p2pfl.experiment import build_experiment
from p2pfl.sim import Simulation
from p2pfl.sim.partition import partition_nodes
from p2pfl.transport import free_tcp_ports

HERE = Path(__file__).parent
ROOT = HERE.parents[1]


def torchrun(ranks: int, args: list[str], cwd: Path, timeout: float = 120) -> str:
    """Run ``torchrun --nproc-per-node ranks ARGS`` on a free port of 127.0.0.1; its output."""
    (port,) = free_tcp_ports(1)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(HERE)])}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        f"--nproc-per-node={ranks}",
        "--master-addr=127.0.0.1",
        f"--master-port={port}",
        *args,
    ]
    done = subprocess.run(
        cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


def single_process(overrides: list[str]) -> Simulation:
    sim = Simulation(build_experiment(load_scenario(None, overrides)))
    sim.run()
    return sim


@pytest.mark.timeout(180)
def test_torchrun_sim_writes_the_single_process_summary(tmp_path: Path) -> None:
    # Prepare
    overrides = ["run.rounds=4", "evaluation.local_test=true", "evaluation.personalize_steps=3"]
    sets = [a for o in overrides for a in ("--set", o)]
    # Execute
    out = torchrun(2, ["-m", "p2pfl", "sim", *sets, "--out", str(tmp_path), "--quiet"], tmp_path)
    ref = single_process(overrides)
    # Assert
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["distributed"]["ranks"] == 2
    assert sum(summary["distributed"]["nodes_per_rank"]) == 16
    assert summary["distributed"]["halo_bytes_per_round"] > 0
    got = [h["honest_accuracy_mean"] for h in summary["history"]]
    want = [float(m.honest_accuracy.mean()) for m in ref.history]
    assert got == pytest.approx(want, abs=1e-6)
    mins = [h["honest_accuracy_min"] for h in summary["history"]]
    assert mins == pytest.approx([float(m.honest_accuracy.min()) for m in ref.history], abs=1e-6)
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 16 * len(ref.history), out
    # local and personalized accuracy: each rank scores its own nodes
    honest = torch.tensor(ref.exp.honest)
    for key in ("local_accuracy", "personalized_accuracy"):
        want_final = getattr(ref.history[-1], key)[honest]
        assert summary[f"{key}_mean"] == pytest.approx(float(want_final.mean()), abs=1e-6), key
    # each rank counts its own senders' (and attackers') messages; rank 0 reports the sum
    assert summary["bytes_sent_total"] == sum(ref.channel.bytes_sent) > 0


CASES = {
    # ALIE sees every honest vector: the attackers' rank reads the other rank's honest rows
    "omniscient-alie-krum": (
        2,
        ["byzantine.attack=alie", "byzantine.knowledge=omniscient", "aggregator.name=krum"],
    ),
    # Fang's reference is the mean honest model before the round: summed across ranks
    "omniscient-fang": (
        2,
        [
            "byzantine.attack=fang_trimmed_mean",
            "byzantine.knowledge=omniscient",
            "aggregator.name=trimmed_mean",
        ],
    ),
    # a ring over 3 ranks: attackers at block edges target nodes on the next rank, and
    # dissensus reads its targets' neighbours there
    "ring-dissensus-3-ranks": (
        3,
        [
            "topology.kind=ring",
            "topology.params={}",
            "topology.n=15",
            "byzantine.nodes=[4,5,10]",
            "byzantine.attack=dissensus",
            "aggregator.name=mean",
        ],
    ),
    # a huge crafted vector makes the mean of its neighbours non-finite: they are muted
    # mid-run, and the routes change on every rank alike
    "divergence-mutes-nodes": (
        2,
        [
            "topology.kind=ring",
            "topology.params={}",
            "byzantine.nodes=[7]",
            "byzantine.attack=scaled",
            "byzantine.params={lam=1e20}",
            "aggregator.name=mean",
        ],
    ),
}


ROUNDS = ["run.rounds=6", "run.eval_every=2"]


@pytest.fixture(scope="module")
def distributed_runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every case, run by torchrun: one launch per number of ranks."""
    out = tmp_path_factory.mktemp("distributed")
    for ranks in sorted({k for k, _ in CASES.values()}):
        cases = [
            f"{name}={';'.join([*sets, *ROUNDS])}"
            for name, (k, sets) in sorted(CASES.items())
            if k == ranks
        ]
        torchrun(ranks, [str(HERE / "distributed_rank.py"), str(out), *cases], out, timeout=240)
    return out


@pytest.mark.timeout(300)
@pytest.mark.parametrize("name", sorted(CASES))
def test_ranks_give_the_single_process_numbers(name: str, distributed_runs: Path) -> None:
    # Prepare
    ranks, overrides = CASES[name]
    overrides = [*overrides, *ROUNDS]
    exp = build_experiment(load_scenario(None, overrides))
    owner = partition_nodes(exp.topology.graph, ranks, exp.seed).owner
    across = [(b, i) for b in exp.byzantine for i in exp.neighbours(b) if owner[b] != owner[i]]
    assert across, "the case must have an attacker whose target is on another rank"
    # Execute
    got = distributed_runs / name
    ref = single_process(overrides)
    # Assert
    honest = torch.tensor(exp.honest)
    acc = torch.from_numpy(np.load(got / "accuracy.npy", allow_pickle=False))
    want = torch.stack([m.accuracy for m in ref.history])
    assert acc.shape == want.shape
    torch.testing.assert_close(acc[:, honest], want[:, honest], rtol=0, atol=1e-6)
    params = torch.from_numpy(np.load(got / "params.npy", allow_pickle=False))
    torch.testing.assert_close(params, ref.params, rtol=0, atol=1e-5, equal_nan=True)
    diverged = np.load(got / "diverged.npy", allow_pickle=False)
    assert {int(i): int(r) for i, r in diverged} == ref.diverged
    if name == "divergence-mutes-nodes":
        assert ref.diverged, "the case must make some honest node diverge"
        assert len(ref.diverged) < len(exp.honest)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (NCCL)")
@pytest.mark.timeout(300)
def test_torchrun_on_cuda_uses_nccl_and_gives_the_cpu_numbers(tmp_path: Path) -> None:
    # Prepare: one rank per GPU (NCCL cannot put two ranks on one device)
    ranks = min(2, torch.cuda.device_count())
    overrides = ["run.rounds=4"]
    sets = [a for o in [*overrides, "run.device=cuda"] for a in ("--set", o)]
    # Execute
    torchrun(ranks, ["-m", "p2pfl", "sim", *sets, "--out", str(tmp_path), "--quiet"], tmp_path)
    ref = single_process(overrides)
    # Assert
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["distributed"]["ranks"] == ranks
    got = [h["honest_accuracy_mean"] for h in summary["history"]]
    assert got == pytest.approx([float(m.honest_accuracy.mean()) for m in ref.history], abs=0.02)
