"""Node-level rules: each combines a :class:`Neighbourhood` into ``(b, d)`` new vectors.

Every rule has the signature ``rule(hood, *, <tunables with defaults>)``; the
keyword-only parameters are what a scenario's ``[aggregator.params]`` table may
set. Rules that ignore the mixing weights treat own and received vectors alike;
``gossip`` and ``clipped_gossip`` use ``hood.weights``; ``centered_clip`` and
``clipped_gossip`` are centred on the node's own vector.
"""

from __future__ import annotations

from typing import Any, Literal

from torch import Tensor

from p2pfl.aggregators.bulyan import bulyan
from p2pfl.aggregators.centered_clip import centered_clip
from p2pfl.aggregators.clipped_gossip import adaptive_radius, clipped_gossip, theorem_radius
from p2pfl.aggregators.geometric_median import geometric_median
from p2pfl.aggregators.krum import krum, multi_krum
from p2pfl.aggregators.mean import mean
from p2pfl.aggregators.median import median
from p2pfl.aggregators.neighbourhood import Neighbourhood
from p2pfl.aggregators.nnm import nnm
from p2pfl.aggregators.trimmed_mean import trimmed_mean

# --- rules -------------------------------------------------------------------


def mean_rule(hood: Neighbourhood) -> Tensor:
    """Uniform mean of own and received vectors."""
    return mean(hood.stacked())


def gossip_rule(hood: Neighbourhood) -> Tensor:
    """Gossip averaging ``x_i <- sum_j W_ij x_j`` with the node's mixing weights."""
    return mean(hood.stacked(), hood.weights)


def median_rule(hood: Neighbourhood) -> Tensor:
    """Coordinate-wise median of own and received vectors."""
    return median(hood.stacked())


def trimmed_mean_rule(hood: Neighbourhood) -> Tensor:
    """Coordinate-wise trimmed mean, trimming ``hood.f`` values at each end."""
    return trimmed_mean(hood.stacked(), hood.f)


def krum_rule(hood: Neighbourhood) -> Tensor:
    """Krum over own and received vectors."""
    return krum(hood.stacked(), hood.f)


def multi_krum_rule(hood: Neighbourhood, *, m: int | None = None) -> Tensor:
    """Multi-Krum averaging ``m`` vectors (``None``: ``n - f``)."""
    count = hood.n - hood.f if m is None else m
    return multi_krum(hood.stacked(), hood.f, count)


def geometric_median_rule(
    hood: Neighbourhood, *, nu: float = 1e-6, tol: float = 1e-7, max_iter: int = 100
) -> Tensor:
    """Geometric median (smoothed Weiszfeld) of own and received vectors."""
    return geometric_median(hood.stacked(), nu=nu, tol=tol, max_iter=max_iter)


def centered_clip_rule(hood: Neighbourhood, *, tau: float = 1.0, iters: int = 1) -> Tensor:
    """Centered clipping of own and received vectors, starting from the node's own vector.

    ``tau`` is in the units of the parameter vectors: set it near the typical
    distance between honest models. ``iters`` is the number ``L`` of clipping steps.
    """
    return centered_clip(hood.stacked(), hood.own, tau, iters)


def bulyan_rule(hood: Neighbourhood) -> Tensor:
    """Bulyan (over Krum) of own and received vectors."""
    return bulyan(hood.stacked(), hood.f)


Radius = Literal["fixed", "adaptive", "theorem"]
RADII: tuple[Radius, ...] = ("fixed", "adaptive", "theorem")


def clipped_gossip_rule(
    hood: Neighbourhood, *, tau: float | None = None, radius: Radius | None = None
) -> Tensor:
    """ClippedGossip; ``radius`` chooses ``tau_i`` (:mod:`p2pfl.aggregators.clipped_gossip`).

    ``"fixed"``: the given ``tau`` (what the paper's figures used); ``"adaptive"``:
    the released code's rule, clipping the farthest neighbours whose weights reach
    the worst-case Byzantine weight of ``f`` neighbours; ``"theorem"``: the
    convergence theorem's radius from the honest neighbours' spread, which needs
    ``hood.byzantine`` (simulator only). Unset: ``"fixed"`` when ``tau`` is given,
    else ``"adaptive"``.
    """
    chosen = radius or ("fixed" if tau is not None else "adaptive")
    neighbour_weights = hood.weights[:, 1:]
    r: float | Tensor
    if chosen == "fixed":
        assert tau is not None  # check_clipped_gossip
        r = tau
    elif chosen == "adaptive":
        r = adaptive_radius(hood.own, hood.received, neighbour_weights, hood.f)
    else:
        if hood.byzantine is None:
            raise ValueError(
                "clipped_gossip: radius 'theorem' needs to know which neighbours are "
                "Byzantine (an oracle the simulator has, a deployed node does not)"
            )
        r = theorem_radius(hood.own, hood.received, neighbour_weights, hood.byzantine)
    return clipped_gossip(hood.own, hood.received, neighbour_weights, r)


def clipped_gossip_oracle(*, tau: float | None = None, radius: Radius | None = None) -> bool:
    """Whether these parameters need the simulator's knowledge of who is Byzantine."""
    return radius == "theorem"


def nnm_step(x: Tensor, f: int) -> Tensor:
    """Pre-aggregation: nearest-neighbour mixing of own and received vectors."""
    return nnm(x, f)


# --- least number of inputs ----------------------------------------------------


def any_count(f: int, **params: Any) -> int:
    return 1


def honest_majority(f: int, **params: Any) -> int:
    return 2 * f + 1


def krum_count(f: int, **params: Any) -> int:
    return 2 * f + 3


def multi_krum_count(f: int, m: int | None = None, **params: Any) -> int:
    return max(2 * f + 3, m or 0)


def bulyan_count(f: int, **params: Any) -> int:
    return 4 * f + 3


def nnm_count(f: int) -> int:
    return 2 * f + 1


# --- parameter value checks (messages start with the parameter name) ------------


def _positive(name: str, value: float) -> None:
    if not value > 0 or value == float("inf"):
        raise ValueError(f"{name}: must be finite and > 0, got {value!r}")


def check_multi_krum(m: int | None = None) -> None:
    if m is not None and m < 1:
        raise ValueError(f"m: must be >= 1 (or unset for n - f), got {m}")


def check_geometric_median(nu: float = 1e-6, tol: float = 1e-7, max_iter: int = 100) -> None:
    _positive("nu", nu)
    if not 0 <= tol < float("inf"):
        raise ValueError(f"tol: must be finite and >= 0, got {tol!r}")
    if max_iter < 1:
        raise ValueError(f"max_iter: must be >= 1, got {max_iter}")


def check_centered_clip(tau: float = 1.0, iters: int = 1) -> None:
    _positive("tau", tau)
    if iters < 1:
        raise ValueError(f"iters: must be >= 1, got {iters}")


def check_clipped_gossip(tau: float | None = None, radius: str | None = None) -> None:
    if radius is not None and radius not in RADII:
        raise ValueError(f"radius: must be one of {', '.join(RADII)}, got {radius!r}")
    if tau is not None:
        _positive("tau", tau)
    if radius == "fixed" and tau is None:
        raise ValueError("radius: 'fixed' needs tau (the paper's figures used 1 and 0.1)")
    if radius in ("adaptive", "theorem") and tau is not None:
        raise ValueError(f"tau: not used with radius {radius!r}; leave it unset")
