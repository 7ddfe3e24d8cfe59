"""Simulator throughput: vectorized rounds vs. a per-node Python loop, measured in one run.

For N = 16, 256 and 2,048 nodes of the default scenario (digits MLP, random
4-regular graph, 3/16 of the nodes sign-flipping, median), prints node-rounds per
second of :class:`p2pfl.sim.Simulation` next to a baseline that does the same
work the plain way: a Python loop over nodes, each training an ``nn.Module`` with
``torch.optim.SGD`` on the same minibatches, then a loop over nodes taking the
coordinate-wise median of its neighbourhood. Also times 2,048 nodes x 50 rounds.

    python benchmarks/bench_sim.py [--quick]
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn

from p2pfl.aggregators import median
from p2pfl.config import load_scenario
from p2pfl.experiment import Experiment, build_experiment
from p2pfl.params import load_flat
from p2pfl.seeding import batch_indices
from p2pfl.sim import Simulation


def experiment(n: int, rounds: int) -> Experiment:
    byz = max(1, (3 * n) // 16)
    overrides = [
        f"topology.n={n}",
        f"byzantine.count={byz}",
        f"run.rounds={rounds}",
        f"run.eval_every={rounds}",
    ]
    if n > 1400:  # more nodes than digits training samples: let shards overlap
        overrides.append("data.partition_params.allow_overlap=true")
    return build_experiment(load_scenario(None, overrides))


def vectorized_rate(exp: Experiment, rounds: int) -> float:
    sim = Simulation(exp)
    sim.step()  # warm-up (first vmap call traces)
    start = time.perf_counter()
    for _ in range(rounds):
        sim.step()
    return exp.n * rounds / (time.perf_counter() - start)


def loop_rate(exp: Experiment, rounds: int) -> float:
    """Per-node Python loop doing the same training and aggregation."""
    n, d = exp.n, exp.initial.numel()
    params = exp.initial.repeat(n, 1)
    model = exp.model
    spec = exp.training
    byz = sorted(exp.byzantine)
    neighbours = [exp.neighbours(i) for i in range(n)]

    def train(i: int, r: int) -> torch.Tensor:
        load_flat(model, params[i])
        opt = torch.optim.SGD(model.parameters(), lr=spec.lr)
        o, s = int(exp.local.offsets[i]), exp.local.sizes[i : i + 1]
        for step in range(spec.local_steps):
            idx = batch_indices(exp.seed, torch.tensor([i]), r, step, spec.batch_size, s)[0] + o
            opt.zero_grad()
            nn.functional.cross_entropy(model(exp.local.x[idx]), exp.local.y[idx]).backward()
            opt.step()
        return torch.cat([t.detach().reshape(-1) for t in model.state_dict().values()])

    train(0, 0)  # warm-up: the first autograd and optimizer calls initialize lazily
    start = time.perf_counter()
    for r in range(1, rounds + 1):
        trained = torch.empty(n, d)
        for i in range(n):
            trained[i] = train(i, r)
        sent = trained.clone()
        sent[byz] = -trained[byz]
        new = trained.clone()
        for i in range(n):
            new[i] = median(torch.cat([trained[i : i + 1], sent[neighbours[i]]]))
        params = new
    return n * rounds / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer rounds (smoke run)")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"{'N':>6} {'vectorized node-rounds/s':>26} {'loop node-rounds/s':>20} {'ratio':>8}")
    for n in (16, 256, 2048):
        exp = experiment(n, 5)
        vrounds = 3 if args.quick else (20 if n <= 256 else 5)
        lrounds = 1 if (args.quick or n > 16) else 3
        v = vectorized_rate(exp, vrounds)
        loop = loop_rate(exp, lrounds)
        print(f"{n:>6} {v:>26.0f} {loop:>20.0f} {v / loop:>7.1f}x")
    rounds = 5 if args.quick else 50
    exp = experiment(2048, rounds)
    start = time.perf_counter()
    Simulation(exp).run()
    elapsed = time.perf_counter() - start
    print(f"2048 nodes x {rounds} rounds (default model, evaluation at the end): {elapsed:.1f} s")


if __name__ == "__main__":
    main()
