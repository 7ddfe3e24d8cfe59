"""ClippedGossip (He, Karimireddy & Jaggi, 2022, arXiv 2202.01545).

Node ``i`` with mixing weights ``W`` updates

    x_i <- x_i + sum_{j != i} W_ij clip(x_j - x_i, tau_i),  clip(z, t) = z min(1, t / ||z||)

so a neighbour can pull ``x_i`` by at most ``W_ij tau_i``. With ``tau_i = inf`` it
is plain gossip averaging. Three ways to choose the radius ``tau_i``, each from a
different part of the paper's work (``aggregator.params.radius``):

* ``"fixed"``: one ``tau`` for every node and round. Every figure of the paper
  used one (the released code's ``scp<tau>``: ``tau = 1`` on the dumbbell,
  ``tau = 0.1`` on the malicious ring), so the experiments reproducing them do too.
* ``"adaptive"`` (:func:`adaptive_radius`): the paper's practical rule, as the
  authors' released code implements it (``SelfCenteredClipping`` with
  ``tau=None`` in ``codes/aggregator.py`` of epfml/byzantine-robust-decentralized-
  optimizer): ``tau_i`` is the second-largest distance to a neighbour, so that
  the farthest one is clipped. That is the rule for one Byzantine neighbour
  with uniform weights; :func:`adaptive_radius` generalizes it to ``f`` and any
  weights: with ``delta_i`` = the sum of the ``f`` largest neighbour weights (the
  worst case for ``f`` Byzantine neighbours), sort neighbours by decreasing
  distance, take the fewest farthest ones whose weights reach ``delta_i``, and
  set ``tau_i`` to the distance of the next one (0 when none is left). With
  uniform weights this clips the ``f`` farthest neighbours to the ``(f+1)``-th
  largest distance; with ``f = 0`` nothing is clipped. It trusts ``f``: with more
  Byzantine neighbours than ``f`` the extra ones are not clipped, and on a
  graph whose honest neighbours disagree (a bridge between two data clusters)
  the far honest neighbour is the one clipped.
* ``"theorem"`` (:func:`theorem_radius`): the radius of the paper's convergence
  theorem, ``tau_i = sqrt((1/delta_i) sum_{j honest} W_ij ||x_j - x_i||^2)`` with
  ``delta_i = sum_{j Byzantine} W_ij`` (the expectation replaced by this round's
  vectors; ``tau_i = inf``, plain gossip, when ``delta_i = 0``). It needs to know
  which neighbours are Byzantine, an oracle a simulator has and a deployed node
  does not (``Neighbourhood.byzantine``), so only ``p2pfl sim`` can use it.
"""

from __future__ import annotations

import torch
from torch import Tensor

from p2pfl.aggregators._checks import (
    FLOAT_DTYPES,
    check_finite,
    check_int,
    check_positive,
    check_weights,
)
from p2pfl.aggregators.centered_clip import clip_factors

#: Relative slack when comparing cumulative weights with ``delta``: the same
#: weights (often float32) summed in another order may differ in the last bits.
WEIGHT_SLACK = 1e-6


def _inputs(
    own: Tensor, neighbours: Tensor, weights: Tensor, rule: str
) -> tuple[Tensor, Tensor, Tensor, bool]:
    """Validated ``(b, d)`` own, ``(b, m, d)`` neighbours, float64 ``(b, m)`` weights."""
    if not isinstance(neighbours, Tensor) or neighbours.ndim not in (2, 3):
        raise ValueError(
            f"{rule}: neighbours must be a tensor of shape (m, d) or (b, m, d), got "
            f"{tuple(neighbours.shape) if isinstance(neighbours, Tensor) else type(neighbours).__name__}"
        )
    if neighbours.dtype not in FLOAT_DTYPES:
        raise ValueError(f"{rule}: neighbours must be float32 or float64, got {neighbours.dtype}")
    batched = neighbours.ndim == 3
    x3 = neighbours if batched else neighbours.unsqueeze(0)
    b, m, d = x3.shape
    if not isinstance(own, Tensor):
        raise ValueError(f"{rule}: own must be a torch.Tensor, got {type(own).__name__}")
    expected = (b, d) if batched else (d,)
    if tuple(own.shape) != expected:
        raise ValueError(
            f"{rule}: own must have shape {expected} to match neighbours of shape "
            f"{tuple(neighbours.shape)}, got {tuple(own.shape)}"
        )
    if own.dtype != x3.dtype:
        raise ValueError(f"{rule}: own is {own.dtype} but neighbours are {x3.dtype}")
    w = check_weights(weights, m, b, batched, rule)
    check_finite(x3, rule, "neighbours")
    check_finite(own, rule, "own")
    return own.reshape(b, d), x3, w, batched


def adaptive_radius(own: Tensor, neighbours: Tensor, weights: Tensor, f: int) -> Tensor:
    """The adaptive clipping radius ``tau_i`` of ClippedGossip (module docstring).

    Args:
        own: ``(d,)`` or ``(b, d)`` the node's vector.
        neighbours: ``(m, d)`` or ``(b, m, d)`` its neighbours' vectors.
        weights: ``(m,)`` or ``(b, m)`` their mixing weights ``W_ij``.
        f: number of Byzantine neighbours to tolerate.

    Returns:
        ``()`` or ``(b,)`` float64 radii.

    Example:
        >>> import torch
        >>> own = torch.zeros(1)
        >>> adaptive_radius(own, torch.tensor([[1.0], [2.0], [9.0]]), torch.full((3,), 0.25), 1)
        tensor(2., dtype=torch.float64)
    """
    own2, x3, w, batched = _inputs(own, neighbours, weights, "adaptive_radius")
    f = check_int(f, "adaptive_radius", "f", 0)
    radius = _radius(own2, x3, w, f)
    return radius if batched else radius.squeeze(0)


def _radius(own: Tensor, x: Tensor, w: Tensor, f: int) -> Tensor:
    b, m, _ = x.shape
    if m == 0:
        return torch.zeros(b, dtype=torch.float64)
    dist = torch.linalg.vector_norm(x - own.unsqueeze(1), dim=-1).to(torch.float64)
    k = min(f, m)
    delta = torch.topk(w, k, dim=-1).values.sum(-1) if k else torch.zeros(b, dtype=w.dtype)
    order = torch.argsort(dist, dim=-1, descending=True, stable=True)
    dist_desc = dist.gather(1, order)
    cum = torch.cat([torch.zeros((b, 1), dtype=w.dtype), w.gather(1, order).cumsum(-1)], 1)
    slack = WEIGHT_SLACK * w.sum(-1, keepdim=True)
    # fewest farthest neighbours whose weight reaches delta; the radius is the next distance
    count = (cum < delta.unsqueeze(-1) - slack).sum(-1)
    padded = torch.cat([dist_desc, torch.zeros((b, 1), dtype=dist.dtype)], 1)
    return padded.gather(1, count.unsqueeze(-1)).squeeze(-1)


def theorem_radius(own: Tensor, neighbours: Tensor, weights: Tensor, byzantine: Tensor) -> Tensor:
    """The clipping radius of ClippedGossip's convergence theorem (module docstring).

    ``tau_i = sqrt(sum_{j honest} W_ij ||x_j - x_i||^2 / delta_i)``, ``delta_i =
    sum_{j Byzantine} W_ij``: the honest neighbours' weighted squared distance,
    this round's vectors standing in for the theorem's expectation. ``inf`` (no
    clipping) for a node with no Byzantine neighbour, 0 for one with no honest one.

    Args:
        own: ``(d,)`` or ``(b, d)`` the node's vector.
        neighbours: ``(m, d)`` or ``(b, m, d)`` its neighbours' vectors.
        weights: ``(m,)`` or ``(b, m)`` their mixing weights ``W_ij``.
        byzantine: ``(m,)`` or ``(b, m)`` bool, which neighbours are Byzantine.

    Returns:
        ``()`` or ``(b,)`` float64 radii.

    Example:
        >>> import torch
        >>> own = torch.zeros(1)
        >>> nbrs = torch.tensor([[3.0], [4.0], [100.0]])
        >>> w = torch.tensor([0.25, 0.25, 0.25])
        >>> theorem_radius(own, nbrs, w, torch.tensor([False, False, True]))
        tensor(5., dtype=torch.float64)
    """
    own2, x3, w, batched = _inputs(own, neighbours, weights, "theorem_radius")
    b, m, _ = x3.shape
    mask = byzantine if batched else byzantine.unsqueeze(0)
    if not isinstance(mask, Tensor) or mask.dtype != torch.bool or tuple(mask.shape) != (b, m):
        raise ValueError(f"theorem_radius: byzantine must be a ({b}, {m}) bool tensor")
    dist2 = (x3 - own2.unsqueeze(1)).to(torch.float64).square().sum(-1)
    honest = torch.where(mask, 0.0, w * dist2).sum(-1)
    delta = torch.where(mask, w, 0.0).sum(-1)
    radius = torch.where(delta > 0, (honest / delta.clamp_min(1e-300)).sqrt(), torch.inf)
    return radius if batched else radius.squeeze(0)


def clipped_gossip(own: Tensor, neighbours: Tensor, weights: Tensor, tau: float | Tensor) -> Tensor:
    """One ClippedGossip step: ``own + sum_j w_j clip(x_j - own, tau)`` (He et al. 2022).

    Args:
        own: ``(d,)`` or ``(b, d)`` the node's vector ``x_i``.
        neighbours: ``(m, d)`` or ``(b, m, d)`` the neighbours' vectors ``x_j``
            (``m`` may be 0).
        weights: ``(m,)`` or ``(b, m)`` non-negative mixing weights ``W_ij``
            (the self weight is not needed: ``clip(0) = 0``).
        tau: clipping radius, > 0: a number, or a ``()``/``(b,)`` tensor (one per
            node, e.g. from :func:`adaptive_radius`; 0 allowed there: no move;
            ``inf``: no clipping).

    Returns:
        ``(d,)`` or ``(b, d)``.

    Example:
        >>> import torch
        >>> own = torch.zeros(2)
        >>> nbrs = torch.tensor([[1.0, 0.0], [0.0, 40.0]])
        >>> clipped_gossip(own, nbrs, torch.tensor([0.5, 0.5]), tau=2.0)
        tensor([0.5000, 1.0000])
    """
    own2, x3, w, batched = _inputs(own, neighbours, weights, "clipped_gossip")
    b, m, _ = x3.shape
    if isinstance(tau, Tensor):
        if tuple(tau.shape) not in ((), (b,)) or not tau.is_floating_point():
            raise ValueError(
                f"clipped_gossip: tau must be a number or a float tensor of shape () or ({b},), "
                f"got {tau.dtype} {tuple(tau.shape)}"
            )
        if bool(torch.isnan(tau).any()) or bool((tau < 0).any()):
            raise ValueError("clipped_gossip: tau must be >= 0 (inf: no clipping)")
        radius = tau.to(x3.dtype).reshape(-1, 1).expand(b, 1)
    else:
        radius = torch.full((b, 1), check_positive(tau, "clipped_gossip", "tau"), dtype=x3.dtype)
    if m == 0:
        out = own2.clone()
    else:
        diff = x3 - own2.unsqueeze(1)
        coef = (clip_factors(diff, radius) * w.to(x3.dtype)).unsqueeze(1)  # (b, 1, m)
        out = own2 + torch.bmm(coef, diff).squeeze(1)
    return out if batched else out.squeeze(0)
