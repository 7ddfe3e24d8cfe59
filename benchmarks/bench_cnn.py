"""Generic models vectorized: the built-in CNN trained by the simulator vs. a per-node loop.

For N = 64 nodes (and 16) of the default scenario with ``model.name = "cnn"`` (digits,
random 4-regular graph, 3/16 sign-flipping nodes, median), times whole rounds of
:class:`p2pfl.sim.Simulation` (local SGD for every node at once: this ``Sequential``
CNN as grouped convolutions over stacked per-node parameters, :mod:`p2pfl.grouped`;
then the batched rule) against the plain way, in the same run: a Python loop over nodes, each
loading its vector into the ``nn.Module`` and training it with ``torch.optim.SGD`` on
the same minibatches, then a loop taking each node's coordinate-wise median. Both are
timed in CPU seconds of this process (``time.process_time``), which a machine busy with
other jobs disturbs far less than wall time; wall time is printed too. Torch runs
single-threaded unless ``--threads`` says otherwise: on a shared machine OpenMP's
spinning worker threads cost the loop's many small kernels far more CPU time than
they save (as ``tests/conftest.py`` notes), which would flatter the ratio.

    python benchmarks/bench_cnn.py [--quick] [--nodes 16 64] [--threads 1]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch
from torch import nn

from p2pfl.aggregators import median
from p2pfl.config import load_scenario
from p2pfl.experiment import Experiment, build_experiment
from p2pfl.params import load_flat
from p2pfl.seeding import batch_indices
from p2pfl.sim import Simulation


def experiment(n: int) -> Experiment:
    overrides = [
        "model.name=cnn",
        "training.lr=0.1",
        f"topology.n={n}",
        f"byzantine.count={max(1, (3 * n) // 16)}",
    ]
    return build_experiment(load_scenario(None, overrides))


def timed(fn: Callable[[], None], repeats: int) -> tuple[float, float]:
    """Best CPU seconds and best wall seconds of ``repeats`` calls (after one warm-up)."""
    fn()
    cpu, wall = float("inf"), float("inf")
    for _ in range(repeats):
        c0, w0 = time.process_time(), time.perf_counter()
        fn()
        cpu = min(cpu, time.process_time() - c0)
        wall = min(wall, time.perf_counter() - w0)
    return cpu, wall


def vectorized_round(exp: Experiment) -> Callable[[], None]:
    sim = Simulation(exp)
    return sim.step


def loop_round(exp: Experiment) -> Callable[[], None]:
    """One round the plain way: per-node ``nn.Module`` training, then per-node median."""
    n = exp.n
    params = exp.initial.repeat(n, 1)
    model = exp.model
    spec = exp.training
    byz = sorted(exp.byzantine)
    neighbours = [exp.neighbours(i) for i in range(n)]
    state = {"round": 0, "params": params}

    def train(i: int, r: int, start: torch.Tensor) -> torch.Tensor:
        load_flat(model, start)
        opt = torch.optim.SGD(model.parameters(), lr=spec.lr)
        o, s = int(exp.local.offsets[i]), exp.local.sizes[i : i + 1]
        for step in range(spec.local_steps):
            idx = batch_indices(exp.seed, torch.tensor([i]), r, step, spec.batch_size, s)[0] + o
            opt.zero_grad()
            nn.functional.cross_entropy(model(exp.local.x[idx]), exp.local.y[idx]).backward()
            opt.step()
        return torch.cat([t.detach().reshape(-1) for t in model.state_dict().values()])

    def one_round() -> None:
        r = state["round"] = int(state["round"]) + 1
        current = state["params"]
        assert isinstance(current, torch.Tensor)
        trained = torch.stack([train(i, r, current[i]) for i in range(n)])
        sent = trained.clone()
        sent[byz] = -trained[byz]
        state["params"] = torch.stack(
            [median(torch.cat([trained[i : i + 1], sent[neighbours[i]]])) for i in range(n)]
        )

    return one_round


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer repeats (smoke run)")
    parser.add_argument("--nodes", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    repeats = 1 if args.quick else 3
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; best of {repeats}")
    print(
        f"{'N':>4} {'d':>6} {'vectorized s/round':>19} {'loop s/round':>13} "
        f"{'ratio (CPU)':>12} {'ratio (wall)':>13}"
    )
    for n in args.nodes:
        exp = experiment(n)
        v_cpu, v_wall = timed(vectorized_round(exp), repeats)
        l_cpu, l_wall = timed(loop_round(exp), repeats)
        print(
            f"{n:>4} {exp.initial.numel():>6} {v_cpu:>19.3f} {l_cpu:>13.3f} "
            f"{l_cpu / v_cpu:>11.1f}x {l_wall / v_wall:>12.1f}x"
        )


if __name__ == "__main__":
    main()
