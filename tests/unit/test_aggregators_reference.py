"""Independent float64 reference implementations of the aggregation rules.

Written from the paper definitions with plain loops and numpy, deliberately
unlike the library code (no Gram matrices, no comparator networks); the other
aggregator tests compare the library against these. The tests at the end check
the references themselves on hand-worked examples.
"""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.timeout(60)


def median(x: np.ndarray) -> np.ndarray:
    n, d = x.shape
    out = np.empty(d)
    for k in range(d):
        v = sorted(x[:, k])
        out[k] = v[n // 2] if n % 2 else (v[n // 2 - 1] + v[n // 2]) / 2
    return out


def trimmed_mean(x: np.ndarray, f: int) -> np.ndarray:
    n, d = x.shape
    out = np.empty(d)
    for k in range(d):
        v = sorted(x[:, k])
        out[k] = sum(v[f : n - f]) / (n - 2 * f)
    return out


def sq_dist(a: np.ndarray, b: np.ndarray) -> float:
    return float(sum((float(p) - float(q)) ** 2 for p, q in zip(a, b, strict=True)))


def krum_scores(x: np.ndarray, f: int, members: list[int] | None = None) -> dict[int, float]:
    """Blanchard et al.: sum of squared distances to the |R|-f-2 closest others (>= 1)."""
    members = list(range(len(x))) if members is None else members
    k = max(len(members) - f - 2, 1)
    scores = {}
    for i in members:
        dists = sorted(sq_dist(x[i], x[j]) for j in members if j != i)
        scores[i] = sum(dists[:k])
    return scores


def lowest(scores: dict[int, float], m: int) -> list[int]:
    """The m keys of lowest score, ties to the lower index."""
    return sorted(scores, key=lambda i: (scores[i], i))[:m]


def krum(x: np.ndarray, f: int) -> np.ndarray:
    return x[lowest(krum_scores(x, f), 1)[0]].astype(np.float64)


def multi_krum(x: np.ndarray, f: int, m: int) -> np.ndarray:
    picked = lowest(krum_scores(x, f), m)
    return np.mean([x[i].astype(np.float64) for i in picked], axis=0)


def bulyan(x: np.ndarray, f: int) -> np.ndarray:
    n, d = x.shape
    theta, beta = n - 2 * f, n - 4 * f
    remaining = list(range(n))
    picked = []
    for _ in range(theta):
        i = lowest(krum_scores(x, f, remaining), 1)[0]
        picked.append(i)
        remaining.remove(i)
    out = np.empty(d)
    for k in range(d):
        v = sorted(float(x[i, k]) for i in picked)
        med = v[theta // 2] if theta % 2 else (v[theta // 2 - 1] + v[theta // 2]) / 2
        closest = sorted(range(theta), key=lambda r: (abs(v[r] - med), r))[:beta]
        out[k] = sum(v[r] for r in closest) / beta
    return out


def nnm(x: np.ndarray, f: int) -> np.ndarray:
    n = len(x)
    out = np.empty(x.shape)
    for i in range(n):
        near = sorted(range(n), key=lambda j: (sq_dist(x[i], x[j]), j))[: n - f]
        out[i] = np.mean([x[j].astype(np.float64) for j in near], axis=0)
    return out


def geometric_median(x: np.ndarray, nu: float, tol: float, max_iter: int) -> np.ndarray:
    """Smoothed Weiszfeld (Pillutla et al. 2022) from the mean.

    Stops when a step is at most ``tol`` times the median distance to the new point.
    """
    x = x.astype(np.float64)
    z = x.mean(0)
    for _ in range(max_iter):
        w = np.array([1.0 / max(nu, float(np.linalg.norm(xi - z))) for xi in x])
        new = (w[:, None] * x).sum(0) / w.sum()
        scale = float(np.median([np.linalg.norm(xi - new) for xi in x]))
        step = float(np.linalg.norm(new - z))
        z = new
        if step <= tol * scale:
            break
    return z


def clip(z: np.ndarray, tau: float) -> np.ndarray:
    norm = np.linalg.norm(z)
    return z if norm <= tau else z * (tau / norm)


def centered_clip(x: np.ndarray, center: np.ndarray, tau: float, iters: int) -> np.ndarray:
    v = center.astype(np.float64)
    x = x.astype(np.float64)
    for _ in range(iters):
        v = v + sum(clip(xi - v, tau) for xi in x) / len(x)
    return v


def clipped_gossip(own: np.ndarray, nbrs: np.ndarray, w: np.ndarray, tau: float) -> np.ndarray:
    own = own.astype(np.float64)
    return own + sum(
        (wj * clip(xj.astype(np.float64) - own, tau) for wj, xj in zip(w, nbrs, strict=True)),
        np.zeros_like(own),
    )


def adaptive_radius(own: np.ndarray, nbrs: np.ndarray, w: np.ndarray, f: int) -> float:
    """Clip the farthest neighbours whose weights first reach delta = sum of f largest weights."""
    if len(nbrs) == 0:
        return 0.0
    delta = sum(sorted((float(v) for v in w), reverse=True)[:f])
    dist = [float(np.linalg.norm(xj.astype(np.float64) - own)) for xj in nbrs]
    order = sorted(range(len(nbrs)), key=lambda j: (-dist[j], j))
    slack = 1e-6 * float(np.sum(w))
    total = 0.0
    for j in order:
        if total >= delta - slack:
            return dist[j]
        total += float(w[j])
    return 0.0


# --- the references on hand-worked examples ------------------------------------


def col(*values: float) -> np.ndarray:
    return np.array(values, dtype=np.float64).reshape(-1, 1)


def test_reference_median_even_is_mean_of_middle_pair() -> None:
    assert median(col(1, 2, 3, 10))[0] == 2.5
    assert median(col(3, 1, 2))[0] == 2.0


def test_reference_trimmed_mean() -> None:
    assert trimmed_mean(col(1, 2, 3, 100), 1)[0] == 2.5
    assert trimmed_mean(col(-50, 1, 2, 3, 4, 100), 2)[0] == 2.5


def test_reference_krum_hand_example() -> None:
    # n=5, f=1: scores sum the 2 smallest squared distances:
    # 0 -> 1+9=10, 1 -> 1+4=5, 3 -> 4+9=13, 7 -> 16+36=52, 100 -> 93^2+97^2
    x = col(0, 1, 3, 7, 100)
    assert krum_scores(x, 1) == {0: 10.0, 1: 5.0, 2: 13.0, 3: 52.0, 4: 93.0**2 + 97.0**2}
    assert krum(x, 1)[0] == 1.0
    assert multi_krum(x, 1, 2)[0] == 0.5


def test_reference_bulyan_hand_example() -> None:
    # picks 2, 3, 1, 4, 0 (see test_aggregators); median 2, beta=3 closest: 1, 2, 3
    assert bulyan(col(0, 1, 2, 3, 4, 5, 100), 1)[0] == 2.0


def test_reference_nnm_hand_example() -> None:
    out = nnm(col(0, 1, 2, 100), 1)[:, 0]
    assert out.tolist() == [1.0, 1.0, 1.0, pytest.approx(103 / 3)]


def test_reference_clipping() -> None:
    x = np.array([[1.0, 0.0], [1.0, 0.0], [100.0, 0.0]])
    assert centered_clip(x, np.zeros(2), 3.0, 1)[0] == pytest.approx(5 / 3)
    own = np.zeros(2)
    nbrs = np.array([[1.0, 0.0], [0.0, 40.0]])
    assert clipped_gossip(own, nbrs, np.array([0.5, 0.5]), 2.0).tolist() == [0.5, 1.0]
    w = np.full(3, 0.25)
    assert adaptive_radius(np.zeros(1), col(1, 2, 9), w, 1) == 2.0
    assert adaptive_radius(np.zeros(1), col(1, 2, 9), w, 0) == 9.0
    assert adaptive_radius(np.zeros(1), col(1, 2, 9), w, 3) == 0.0


def test_reference_geometric_median_symmetric_example() -> None:
    x = np.array([[0.0, 0.0], [2.0, 0.0], [0.0, 2.0], [50.0, 50.0]])
    assert geometric_median(x, 1e-6, 0.0, 500) == pytest.approx([1.0, 1.0], abs=1e-6)
