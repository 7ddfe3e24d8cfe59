"""Dissensus (He, Karimireddy and Jaggi, "Byzantine-robust decentralized learning via
ClippedGossip", 2022, arXiv 2202.01545)."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from p2pfl.attacks import checks
from p2pfl.attacks.view import AttackView


def check_dissensus(*, eps: float = 1.5, **_: Any) -> None:
    checks.positive("dissensus", "eps", eps)


def dissensus(view: AttackView, *, eps: float = 1.5) -> Tensor:
    """Dissensus: to each target ``i`` send ``x_i - eps * pull_i / w_i``, shape ``(t, d)``.

    ``pull_i = sum_{k honest in N(i)} W_ik (x_k - x_i)`` (``view.target_pull``) and
    ``w_i = sum_{b Byzantine in N(i)} W_ib`` (``view.target_byzantine_weight``).
    If every Byzantine neighbour of ``i`` sends this, the gossip step of ``i``,
    ``x_i + pull_i + sum_b W_ib (y_b - x_i)``, becomes ``x_i + (1 - eps) pull_i``:
    ``eps = 1`` cancels the honest neighbours' pull, ``eps > 1`` pushes ``i`` away
    from them, so neighbouring honest nodes drift apart instead of reaching
    consensus.

    Needs each target's honest neighbours' vectors. ``view.target_pull`` sums
    only those the attacker sees: with local knowledge, the target's honest
    neighbours that are the attacker's neighbours too. A target with none of them
    visible is sent its own vector ``x_i``, which does not move it at all (on the
    paper's ring, where each Byzantine leaf touches one honest node, local
    dissensus is no attack; the simulator warns). He et al.'s attackers know
    the target's neighbourhood (``byzantine.knowledge = "omniscient"`` here).
    """
    check_dissensus(eps=eps)
    w = view.target_byzantine_weight
    if w.numel() and not bool((w > 0).all()):
        bad = int((w <= 0).nonzero()[0, 0])
        raise ValueError(
            "dissensus: target_byzantine_weight must be > 0 for every target "
            f"(target {bad} has {float(w[bad])}); the attacker cannot move such a target"
        )
    w = w.to(device=view.targets.device, dtype=view.targets.dtype).reshape(-1, 1)
    return (view.targets - eps * view.target_pull / w).to(view.own.dtype)
