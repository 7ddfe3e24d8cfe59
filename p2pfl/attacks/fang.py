"""Fang et al.'s full-knowledge attack on median and trimmed mean ("Local model
poisoning attacks to Byzantine-robust federated learning", USENIX Security 2020)."""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import Tensor

from p2pfl.attacks import checks
from p2pfl.attacks.view import AttackView, Needs, require_honest

Reference = Literal["before", "own", "zero"]
REFERENCES: tuple[Reference, ...] = ("before", "own", "zero")

FANG = Needs(
    honest=1,
    before=True,
    text="1+ honest vectors (their extremes) and the model they started the round from",
)


def check_fang(*, b: float = 2.0, reference: str = "before", **_: Any) -> None:
    checks.greater_than("fang", "b", b, 1.0)
    checks.one_of("fang", "reference", reference, REFERENCES)


def direction(honest: Tensor, reference: Tensor) -> Tensor:
    """``s_j`` in {-1, +1}: the sign of ``mean(honest)_j - reference_j`` (ties count as +1)."""
    diff = honest.mean(dim=0) - reference
    return torch.where(diff < 0, -1.0, 1.0).to(honest.dtype)


def _reference(view: AttackView, reference: Reference) -> Tensor:
    if reference == "own":
        return view.own
    if reference == "zero":
        return torch.zeros_like(view.own)
    if view.before is None:
        raise ValueError(
            "fang: reference='before' needs the model the honest vectors started this round "
            "from (AttackView.before), which the caller did not provide; pass before=... "
            "to p2pfl.rounds.attack_view, or set reference = 'own' or 'zero'"
        )
    return view.before


def fang(view: AttackView, *, b: float = 2.0, reference: Reference = "before") -> Tensor:
    """Fang et al.'s attack: per coordinate, a value beyond the honest extreme opposite ``s_j``.

    ``s_j`` is the direction in which coordinate ``j`` would change this round
    without an attack. Fang et al. read it off the global model before and after
    the round (the sign of the benign update); a peer has no global model, so we
    estimate ``s_j = sign(mean(honest)_j - r_j)`` with the reference ``r``:

    - ``"before"`` (default, the paper's direction): ``view.before``, the model
      the honest vectors started this round from (omniscient: the mean of the
      honest models before local training, Fang's global model; local: the
      attacker's own state, the mean of its own and its honest neighbours'
      vectors after the previous round), so ``s`` is the sign of this round's
      honest change;
    - ``"own"``: the attacker's own vector after local training (``view.own``):
      the direction its honest aggregation step would move it. Both are models
      trained this round, so the difference is mostly sampling noise, and the
      attack is much weaker (issue 11: honest accuracy 0.82 instead of 0.31);
    - ``"zero"``: the sign of the honest mean, the estimate for exchanged
      *updates* (gradients) rather than models.

    With ``w_max,j`` / ``w_min,j`` the largest / smallest honest value of coordinate
    ``j``, the attacker draws uniformly (from ``view.generator``), as in the paper:

    - ``s_j = -1`` (decreasing): in ``[w_max, b w_max]`` if ``w_max > 0``,
      else in ``[w_max, w_max / b]``: at or above the honest maximum;
    - ``s_j = +1`` (increasing): in ``[w_min / b, w_min]`` if ``w_min > 0``,
      else in ``[b w_min, w_min]``: at or below the honest minimum.

    The paper uses the same attack against median and trimmed mean, ``b = 2``.
    Needs: at least one honest vector, and with ``reference = "before"`` the
    round's starting model (``view.before``; the simulator and the node provide it).
    """
    check_fang(b=b, reference=reference)
    honest = require_honest(view, "fang").to(view.own.dtype)
    ref = _reference(view, reference)
    s = direction(honest, ref.to(device=honest.device, dtype=honest.dtype))
    w_max = honest.max(dim=0).values
    w_min = honest.min(dim=0).values
    # push up (s = -1): interval [w_max, b w_max] or [w_max, w_max / b]
    up_lo = w_max
    up_hi = torch.where(w_max > 0, b * w_max, w_max / b)
    # push down (s = +1): interval [w_min / b, w_min] or [b w_min, w_min]
    down_lo = torch.where(w_min > 0, w_min / b, b * w_min)
    down_hi = w_min
    lo = torch.where(s < 0, up_lo, down_lo)
    hi = torch.where(s < 0, up_hi, down_hi)
    g = view.generator
    u = torch.rand(view.d, generator=g, device=g.device, dtype=honest.dtype).to(honest.device)
    return lo + u * (hi - lo)
