"""DP-SGD local steps: all nodes at once (the simulator) vs. a per-node loop, measured in one run.

256 nodes, each with ~250 synthetic examples (64 features, 10 classes), an MLP with 64
hidden units, 5 local DP-SGD steps per round with Poisson batches of expected size 32,
clip norm 1, noise multiplier 1. Times :func:`p2pfl.learning.local_steps` for every
node at once (per-sample clipping without per-sample gradients, the closed-form ReLU
MLP path) next to the plain way: a Python loop over nodes, each computing its batch's
per-sample gradients with ``torch.func.vmap(grad(...))`` on the module, clipping each,
summing, adding the same seeded noise and stepping. Both use the same batches and
noise, and the benchmark checks that they end at the same parameters before it
prints the node-rounds per second of each and their ratio. The loop's cost grows
linearly with the nodes it visits, so it runs over the first ``--loop-nodes`` (32)
of them only, and its rate is per node-round like the simulator's.

    python benchmarks/bench_privacy.py [--rounds R] [--nodes N] [--loop-nodes M]
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from torch.func import functional_call, grad, vmap

from p2pfl.config import load_scenario
from p2pfl.experiment import Experiment, build_experiment
from p2pfl.learning import local_steps
from p2pfl.privacy import NoiseStreams, poisson_batches, sample_rates


def experiment(n: int) -> Experiment:
    samples = int(n * 250 / 0.8)
    return build_experiment(
        load_scenario(
            None,
            [
                f"topology.n={n}",
                "byzantine.count=0",
                "data.source=synthetic",
                f"data.params={{ n_samples = {samples}, n_features = 64, n_classes = 10 }}",
                "model.params.hidden=[64]",
                "training.local_steps=5",
                "training.batch_size=32",
                "privacy.mechanism=dp_sgd",
                "privacy.noise_multiplier=1.0",
                "privacy.clip_norm=1.0",
            ],
        )
    )


def vectorized(exp: Experiment, params: torch.Tensor, rounds: int) -> tuple[torch.Tensor, float]:
    nodes = torch.arange(exp.n)
    local_steps(exp.fmodel, params, None, exp.local, nodes, exp.training, exp.seed, 0)  # warm-up
    start = time.perf_counter()
    for r in range(1, rounds + 1):
        params, _, _ = local_steps(
            exp.fmodel, params, None, exp.local, nodes, exp.training, exp.seed, r
        )
    return params, time.perf_counter() - start


def per_node_loop(
    exp: Experiment, params: torch.Tensor, rounds: int, nodes: int
) -> tuple[torch.Tensor, float]:
    """Each node in turn: per-sample gradients of its Poisson batch, clipped, noised, SGD."""
    spec, dp = exp.training, exp.training.privacy
    assert dp is not None
    model = exp.model
    names = [name for name, _ in model.named_parameters()]
    shapes = [p.shape for _, p in model.named_parameters()]
    sizes = [p.numel() for _, p in model.named_parameters()]

    def loss(state: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(functional_call(model, state, (x.unsqueeze(0),)), y.unsqueeze(0))

    sample_grads = vmap(grad(loss), in_dims=(None, 0, 0))
    rates = sample_rates(spec.batch_size, exp.local.sizes)
    params = params.clone()
    start = time.perf_counter()
    for r in range(1, rounds + 1):
        for i in range(nodes):
            node = torch.tensor([i])
            idx, valid = poisson_batches(
                exp.seed, node, r, spec.local_steps, rates[i : i + 1], exp.local.sizes[i : i + 1]
            )
            noise = NoiseStreams(exp.seed, node, r)
            x = params[i]
            for step in range(spec.local_steps):
                at = idx[0, step][valid[0, step]] + exp.local.offsets[i]
                state = {
                    n: t.view(s) for n, t, s in zip(names, x.split(sizes), shapes, strict=True)
                }
                g = sample_grads(state, exp.local.x[at], exp.local.y[at])
                flat = torch.cat([g[n].flatten(1) for n in names], 1)  # (B, d)
                scale = (dp.clip_norm / flat.norm(dim=1)).clamp(max=1.0)
                total = scale @ flat + dp.noise_multiplier * dp.clip_norm * noise.next(x.numel())[0]
                x = x - spec.lr * total / float(rates[i] * exp.local.sizes[i])
            params[i] = x
    return params, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--loop-nodes", type=int, default=32)
    args = parser.parse_args()
    exp = experiment(args.nodes)
    m = min(args.loop_nodes, exp.n)
    start = exp.initial.repeat(exp.n, 1)
    with torch.no_grad():
        fast, t_fast = vectorized(exp, start, args.rounds)
    slow, t_slow = per_node_loop(exp, start, args.rounds, m)
    err = float((fast[:m] - slow[:m]).norm() / slow[:m].norm())
    assert err < 1e-4, f"the two implementations disagree: relative error {err:.2e}"
    fast_rate = exp.n * args.rounds / t_fast
    slow_rate = m * args.rounds / t_slow
    shard = exp.local.sizes.double().mean()
    print(
        f"DP-SGD local steps, {exp.n} nodes x {args.rounds} rounds x "
        f"{exp.training.local_steps} steps, ~{float(shard):.0f} examples per node, "
        f"d = {exp.initial.numel()} (results agree to {err:.1e} on the looped nodes)"
    )
    print(f"  simulator, all {exp.n} nodes at once: {fast_rate:10.1f} node-rounds/s")
    print(f"  per-node loop, vmap per-sample grads ({m} nodes): {slow_rate:10.1f} node-rounds/s")
    print(f"  ratio: {fast_rate / slow_rate:.1f}x")


if __name__ == "__main__":
    main()
