"""One synchronous round, node by node: the pieces the simulator and the node share.

A round at node ``i``: train locally (:func:`p2pfl.learning.local_steps`), send the
result to every neighbour, receive the neighbours' vectors, and combine own and
received vectors with the rule (:func:`aggregate`). A Byzantine node instead sends
what its attack crafts from an :class:`~p2pfl.attacks.AttackView` built by
:func:`attack_view` from the vectors it can see, and keeps as its own state the
mean of its own and its honest neighbours' vectors (:func:`byzantine_state`).

Received vectors are always ordered by sender id, and mixing weights of
neighbours whose vector did not arrive go to the node itself, so every row of
weights sums to one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property

import torch

from p2pfl.aggregators import Aggregator, Neighbourhood
from p2pfl.attacks import Attack, AttackView
from p2pfl.attacks.view import Needs
from p2pfl.learning import FunctionalModel, evaluate
from p2pfl.seeding import generator_for
from p2pfl.topology.mixing import Mixing

ATTACK_STREAM = 0xA77AC

#: A parameter vector with an entry beyond this magnitude (or a non-finite one) has
#: diverged: its model predicts nothing useful any more, and the squared distances the
#: rules compute in float32 (``~1e24 * d``) are still far from overflowing.
DIVERGENCE_BOUND = 1e12


def divergence(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(diverged, non_finite)`` bool masks of ``(b, d)`` vectors (``()`` each for ``(d,)``).

    *Diverged*: a non-finite entry, or one beyond :data:`DIVERGENCE_BOUND` in
    magnitude; *non-finite*: a NaN or infinite entry. One pass over ``x``.
    """
    if x.numel() == 0:
        none = torch.zeros(x.shape[:-1], dtype=torch.bool)
        return none, none
    lo, hi = torch.aminmax(x, dim=-1)
    # NaN fails every comparison, so it counts as diverged too
    bad = ~((hi <= DIVERGENCE_BOUND) & (lo >= -DIVERGENCE_BOUND))
    return bad, ~(torch.isfinite(lo) & torch.isfinite(hi))


def diverged(x: torch.Tensor) -> torch.Tensor:
    """``(b,)`` bool for ``(b, d)`` vectors (``()`` for one ``(d,)``): a non-finite entry, or
    one beyond :data:`DIVERGENCE_BOUND` in magnitude.

    Divergence is a result: the simulator records the round each honest node's
    vector after local training first diverged (``summary.json``,
    ``diverged_nodes``), and a node process should use the same test. A node whose
    vector is *non-finite* can no longer take part (receivers reject it): it sends
    nothing and aggregates nothing, and its neighbours aggregate without it; a
    finite but exploding one goes on, and its model is evaluated as it is.
    """
    return divergence(x)[0]


def score(
    fmodel: FunctionalModel,
    params: torch.Tensor,
    x: torch.Tensor,
    y: torch.Tensor,
    num_classes: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Accuracy and loss ``(N,)`` of every row of ``params`` (:func:`~p2pfl.learning.evaluate`),
    a diverged row (:func:`divergence`) scored at chance, ``1 / num_classes``, loss NaN.

    The predictions of a diverged model mean nothing (one with weights around 1e30
    still classifies most digits), and scoring them would make a failed defence look
    fine. The simulator and the node score with this one function.
    """
    acc, loss = evaluate(fmodel, params, x, y)
    broken, _ = divergence(params)
    if bool(broken.any()):
        acc[broken] = 1.0 / num_classes
        loss[broken] = float("nan")
    return acc, loss


def hood_weights(mixing: Mixing, node: int, senders: Sequence[int]) -> torch.Tensor:
    """``(m+1,)`` float32 weights: self first, then ``senders``; missing weight goes to self."""
    w = mixing[node, list(senders)].to(torch.float32) if senders else torch.zeros(0)
    own = torch.clamp(1.0 - w.sum(), min=0.0).reshape(1)
    return torch.cat([own, w])


def aggregate(
    aggregator: Aggregator,
    own: torch.Tensor,
    received: torch.Tensor,
    weights: torch.Tensor,
    f: int,
) -> torch.Tensor:
    """Apply the rule to a batch of nodes with the same number of inputs and the same ``f``."""
    return aggregate_hood(
        aggregator, Neighbourhood(own=own, received=received, weights=weights, f=f)
    )


def aggregate_hood(aggregator: Aggregator, hood: Neighbourhood) -> torch.Tensor:
    """:func:`aggregate` of a :class:`Neighbourhood`; a node that received nothing keeps its own."""
    if hood.n == 1:
        return hood.own.clone()
    return aggregator(hood)


def byzantine_state(own: torch.Tensor, honest_received: torch.Tensor) -> torch.Tensor:
    """A Byzantine node's next state: mean of its own and its honest neighbours' vectors."""
    return torch.cat([own.reshape(1, -1), honest_received]).mean(0)


@dataclass(frozen=True)
class AttackGeometry:
    """What a Byzantine node knows of the graph around it: fixed for a run.

    ``visible`` are the honest nodes whose vectors it may use; ``targets`` the
    neighbours it sends to. ``pull_weights[k, j]`` is ``W_ik`` for target ``i =
    targets[k]`` and honest neighbour ``pull_sources[j]`` of ``i`` whose vector the
    attacker sees, so a target's honest pull ``sum_k W_ik (x_k - x_i)`` is one
    matrix product per round.
    """

    attacker: int
    visible: list[int]
    targets: list[int]
    target_weights: torch.Tensor  # (t,)
    pull_sources: list[int]
    pull_weights: torch.Tensor  # (t, K)
    target_byzantine_weight: torch.Tensor  # (t,)
    n: int

    @cached_property
    def _ids(self) -> torch.Tensor:
        """Everyone whose vector a view reads, in one index: self, visible, targets, pull sources."""
        ids = [self.attacker, *self.visible, *self.targets, *self.pull_sources]
        return torch.tensor(ids, dtype=torch.int64)

    @cached_property
    def _pull_self(self) -> torch.Tensor:
        return self.pull_weights.sum(1, keepdim=True)

    def view(
        self,
        vectors: Callable[[torch.Tensor], torch.Tensor],
        f: int,
        seed: int,
        round_: int,
        before: torch.Tensor | None = None,
    ) -> AttackView:
        """This round's :class:`AttackView`.

        ``vectors(ids)`` returns the ``(len(ids), d)`` vectors of the nodes in the 1-D
        int64 tensor ``ids``; it is called once per view. ``before`` is the model the
        honest vectors started this round from (:attr:`AttackView.before`).
        """
        rows = vectors(self._ids)
        h, t = len(self.visible), len(self.targets)
        own = rows[0]
        honest = rows[1 : 1 + h] if h else own.reshape(1, -1)
        tvec = rows[1 + h : 1 + h + t]
        if self.pull_sources:
            pull = self.pull_weights @ rows[1 + h + t :] - self._pull_self * tvec
        else:
            pull = torch.zeros_like(tvec)
        return AttackView(
            own=own,
            honest=honest,
            targets=tvec,
            target_weights=self.target_weights,
            target_pull=pull,
            target_byzantine_weight=self.target_byzantine_weight,
            n=self.n,
            f=f,
            generator=generator_for(seed, self.attacker, round_, ATTACK_STREAM),
            before=before,
        )


def attack_geometry(
    attacker: int,
    visible: Sequence[int],
    targets: Sequence[int],
    neighbours_of: Callable[[int], Sequence[int]],
    byzantine: frozenset[int],
    mixing: Mixing,
) -> AttackGeometry:
    """Precompute :class:`AttackGeometry`; ``n`` is the median size of a target's aggregation."""
    seen = sorted(visible)
    seen_set = set(seen)
    tgt = list(targets)
    column: dict[int, int] = {}
    rows: list[tuple[int, int, float]] = []
    byz_weight, sizes = [], []
    for k, i in enumerate(tgt):
        nbrs = list(neighbours_of(i))
        sizes.append(len(nbrs) + 1)
        for j in nbrs:
            if j not in byzantine and j in seen_set:
                rows.append((k, column.setdefault(j, len(column)), float(mixing[i, j])))
        byz_weight.append(float(mixing[i, [j for j in nbrs if j in byzantine]].sum()))
    pull_weights = torch.zeros((len(tgt), len(column)), dtype=torch.float32)
    for k, c, w in rows:
        pull_weights[k, c] = w
    return AttackGeometry(
        attacker=attacker,
        visible=seen,
        targets=tgt,
        target_weights=mixing[tgt, attacker].to(torch.float32) if tgt else torch.zeros(0),
        pull_sources=sorted(column, key=column.__getitem__),
        pull_weights=pull_weights,
        target_byzantine_weight=torch.tensor(byz_weight, dtype=torch.float32),
        n=int(torch.tensor(sizes).median()) if sizes else 1,
    )


def attack_view(
    attacker: int,
    vectors: Callable[[torch.Tensor], torch.Tensor],
    visible: Sequence[int],
    targets: Sequence[int],
    neighbours_of: Callable[[int], Sequence[int]],
    byzantine: frozenset[int],
    mixing: Mixing,
    f: int,
    seed: int,
    round_: int,
    *,
    before: torch.Tensor | None = None,
) -> AttackView:
    """What Byzantine node ``attacker`` knows when it crafts this round's messages.

    One-shot form of :func:`attack_geometry` followed by :meth:`AttackGeometry.view`
    (callers that craft every round should keep the geometry). ``before`` (d,) is
    the model the honest vectors started this round from, as the attacker knows
    it (:attr:`~p2pfl.attacks.AttackView.before`; a node with local knowledge
    passes its own model before this round's local training). Fang's attack
    (``reference = "before"``, its default) needs it to tell the direction in
    which the honest models move this round.
    """
    geometry = attack_geometry(attacker, visible, targets, neighbours_of, byzantine, mixing)
    return geometry.view(vectors, f, seed, round_, before=before)


def craft_messages(attack: Attack, view: AttackView) -> torch.Tensor:
    """``(t, d)``: the vector for each target (a single crafted vector is sent to all)."""
    out = attack.craft(view)
    t = view.targets.shape[0]
    if out.ndim == 1:
        return out.reshape(1, -1).expand(t, -1)
    if out.shape[0] != t:
        raise ValueError(f"attack {attack.name} returned {out.shape[0]} vectors for {t} targets")
    return out


def knowledge_warnings(
    attack: Attack, geometries: Sequence[AttackGeometry], knowledge: str
) -> list[str]:
    """Why some attackers of a run see too little to act differently from honest nodes.

    One message per shortfall of ``attack.needs`` (:class:`~p2pfl.attacks.view.Needs`),
    counting the attackers (or attacker-target pairs) affected; empty when every
    attacker sees what its attack needs. ``knowledge`` is ``byzantine.knowledge``.
    """
    needs: Needs = attack.needs
    out = []
    hint = (
        " (byzantine.knowledge = 'local': an attacker sees its honest neighbours' vectors only;"
        " 'omniscient' shows it every honest vector, in the simulator)"
        if knowledge == "local"
        else ""
    )
    short = [g.attacker for g in geometries if len(g.visible) < needs.honest]
    if short:
        out.append(
            f"attack {attack.name}: {len(short)} of {len(geometries)} attackers see fewer than "
            f"{needs.honest} honest vectors, so they send what an honest node would "
            f"(needs {needs.text}){hint}"
        )
    if needs.target_neighbours:
        pairs = sum(len(g.targets) for g in geometries)
        blind = sum(int((g.pull_weights.sum(1) == 0).sum()) if g.targets else 0 for g in geometries)
        if blind:
            out.append(
                f"attack {attack.name}: for {blind} of {pairs} (attacker, target) pairs the "
                "attacker sees none of the target's honest neighbours, so it sends the target "
                f"its own vector, which does not move it (needs {needs.text}){hint}"
            )
    return out
