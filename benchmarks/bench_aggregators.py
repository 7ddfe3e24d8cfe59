"""Time the robust aggregation rules against plain torch baselines, in one run.

    python benchmarks/bench_aggregators.py [--threads 1] [--repeat 3] [--quick]

For each rule, the best of ``--repeat`` wall-clock times of our implementation
and of a straightforward torch baseline on the same float32 data, and their
ratio (baseline / ours: above 1 means we are faster):

- median, n=50, d=1e6 and n=9, d=11e6: ``torch.median(x, 0)`` (the lower
  median; ours is the true median, mean of the two middle values for even n);
- trimmed mean, n=50, f=10: ``torch.sort(x, 0)`` then the mean of the middle rows;
- Krum, n=50, f=10: ``torch.cdist`` distances, sorted rows, argmin;
- geometric median, n=50: the plain Weiszfeld loop on the vectors, same start,
  smoothing and stopping rule.

Each result is checked against its baseline before timing. Numbers on a shared
machine are noisy: run it more than once. The default is one torch thread: on a
busy 2-core machine OpenMP's parallel regions stall whenever another process
holds a core, which penalises every implementation, ours and the baselines,
by amounts that change from run to run; ``--threads 2`` uses both cores.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

import torch

from p2pfl.aggregators import geometric_median, krum, median, trimmed_mean


def best_time(fn: Callable[[], object], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


# --- baselines ------------------------------------------------------------------


def median_baseline(x: torch.Tensor) -> torch.Tensor:
    return torch.median(x, 0).values


def trimmed_mean_baseline(x: torch.Tensor, f: int) -> torch.Tensor:
    n = x.shape[0]
    return torch.sort(x, 0).values[f : n - f].mean(0)


def krum_baseline(x: torch.Tensor, f: int) -> torch.Tensor:
    n = x.shape[0]
    sq = torch.cdist(x, x) ** 2
    scores = torch.sort(sq, dim=1).values[:, 1 : n - f - 1].sum(1)  # column 0: self
    return x[scores.argmin()]


def weiszfeld_baseline(
    x: torch.Tensor, nu: float = 1e-6, tol: float = 1e-7, max_iter: int = 100
) -> torch.Tensor:
    z = x.mean(0)
    dist = torch.linalg.vector_norm(x - z, dim=1)
    for _ in range(max_iter):
        w = 1.0 / dist.clamp_min(nu)
        new = (w.unsqueeze(1) * x).sum(0) / w.sum()
        dist = torch.linalg.vector_norm(x - new, dim=1)
        step = torch.linalg.vector_norm(new - z)
        z = new
        if step <= tol * dist.median():
            break
    return z


# --- checks -----------------------------------------------------------------------


def check_median(x: torch.Tensor, ours: torch.Tensor) -> None:
    cols = x[:, :20000].double().sort(0).values
    n = x.shape[0]
    expected = (cols[(n - 1) // 2] + cols[n // 2]) / 2
    assert torch.allclose(ours[:20000].double(), expected, rtol=1e-6, atol=1e-7), "median"
    if n % 2:
        assert torch.equal(ours, median_baseline(x)), "median (odd n)"


Row = tuple[str, float, float, str]


def bench_median(x: torch.Tensor, repeat: int) -> Row:
    check_median(x, median(x))
    n, d = x.shape
    return (
        f"median n={n} d={d:,}",
        best_time(lambda: median(x), repeat),
        best_time(lambda: median_baseline(x), repeat),
        "torch.median(x, 0)",
    )


def bench_trimmed_mean(x: torch.Tensor, f: int, repeat: int) -> Row:
    torch.testing.assert_close(trimmed_mean(x, f), trimmed_mean_baseline(x, f))
    n, d = x.shape
    return (
        f"trimmed_mean n={n} f={f} d={d:,}",
        best_time(lambda: trimmed_mean(x, f), repeat),
        best_time(lambda: trimmed_mean_baseline(x, f), repeat),
        "torch.sort(x, 0) + mean",
    )


def bench_krum(x: torch.Tensor, f: int, repeat: int) -> Row:
    assert torch.equal(krum(x, f), krum_baseline(x, f)), "krum"
    n, d = x.shape
    return (
        f"krum n={n} f={f} d={d:,}",
        best_time(lambda: krum(x, f), repeat),
        best_time(lambda: krum_baseline(x, f), repeat),
        "torch.cdist + sort",
    )


def bench_geometric_median(x: torch.Tensor, repeat: int) -> Row:
    xo = x.clone()
    xo[:5] += 50.0  # a few outliers, so the geometric median is not just the mean
    torch.testing.assert_close(geometric_median(xo), weiszfeld_baseline(xo), rtol=1e-4, atol=1e-4)
    n, d = x.shape
    return (
        f"geometric_median n={n} d={d:,}",
        best_time(lambda: geometric_median(xo), repeat),
        best_time(lambda: weiszfeld_baseline(xo), max(1, repeat - 1)),
        "plain Weiszfeld loop",
    )


def run(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    d_big, d_nine = (50_000, 550_000) if args.quick else (1_000_000, 11_000_000)
    n, f = 50, 10
    g = torch.Generator().manual_seed(0)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), "
        f"best of {args.repeat}, float32"
    )
    x = torch.randn(n, d_big, generator=g)
    rows = [
        bench_median(x, args.repeat),
        bench_median(torch.randn(9, d_nine, generator=g), args.repeat),
        bench_trimmed_mean(x, f, args.repeat),
        bench_krum(x, f, args.repeat),
        bench_geometric_median(x, args.repeat),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"{'rule':<{width}}  {'ours (s)':>9}  {'baseline (s)':>12}  {'ratio':>6}  baseline")
    for name, ours_t, base_t, base_name in rows:
        print(
            f"{name:<{width}}  {ours_t:>9.3f}  {base_t:>12.3f}  "
            f"{base_t / ours_t:>5.1f}x  {base_name}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help=f"torch threads (this machine has {os.cpu_count()} cores)",
    )
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per function")
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke test)")
    run(parser.parse_args())


if __name__ == "__main__":
    main()
