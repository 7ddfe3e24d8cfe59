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

import torch

from p2pfl.aggregators import Aggregator, Neighbourhood
from p2pfl.attacks import Attack, AttackView
from p2pfl.seeding import generator_for

ATTACK_STREAM = 0xA77AC


def hood_weights(mixing: torch.Tensor, node: int, senders: Sequence[int]) -> torch.Tensor:
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
    if received.shape[1] == 0:
        return own.clone()
    return aggregator(Neighbourhood(own=own, received=received, weights=weights, f=f))


def byzantine_state(own: torch.Tensor, honest_received: torch.Tensor) -> torch.Tensor:
    """A Byzantine node's next state: mean of its own and its honest neighbours' vectors."""
    return torch.cat([own.reshape(1, -1), honest_received]).mean(0)


def attack_view(
    attacker: int,
    vectors: Callable[[Sequence[int]], torch.Tensor],
    visible: Sequence[int],
    targets: Sequence[int],
    neighbours_of: Callable[[int], Sequence[int]],
    byzantine: frozenset[int],
    mixing: torch.Tensor,
    f: int,
    seed: int,
    round_: int,
) -> AttackView:
    """What Byzantine node ``attacker`` knows when it crafts this round's messages.

    ``vectors(ids)`` returns the ``(len(ids), d)`` vectors of nodes it can see;
    ``visible`` lists the honest nodes whose vectors it may use (its honest
    neighbours for a local attacker, every honest node for an omniscient one);
    ``targets`` are the neighbours it sends to (their vectors must be visible or
    received). ``n`` is the median size of a target's aggregation.
    """
    own = vectors([attacker])[0]
    seen = sorted(visible)
    honest = vectors(seen) if seen else own.reshape(1, -1)
    seen_set = set(seen)
    tgt = list(targets)
    tvec = vectors(tgt) if tgt else own.new_zeros((0, own.numel()))
    pulls, byz_weight, sizes = [], [], []
    for k, i in enumerate(tgt):
        nbrs = list(neighbours_of(i))
        sizes.append(len(nbrs) + 1)
        honest_k = [j for j in nbrs if j not in byzantine and j in seen_set]
        if honest_k:
            w = mixing[i, honest_k].to(torch.float32).reshape(-1, 1)
            pulls.append((w * (vectors(honest_k) - tvec[k])).sum(0))
        else:
            pulls.append(torch.zeros_like(own))
        byz_weight.append(float(mixing[i, [j for j in nbrs if j in byzantine]].sum()))
    n = int(torch.tensor(sizes).median()) if sizes else 1
    return AttackView(
        own=own,
        honest=honest,
        targets=tvec,
        target_weights=mixing[tgt, attacker].to(torch.float32) if tgt else torch.zeros(0),
        target_pull=torch.stack(pulls) if pulls else own.new_zeros((0, own.numel())),
        target_byzantine_weight=torch.tensor(byz_weight, dtype=torch.float32),
        n=n,
        f=f,
        generator=generator_for(seed, attacker, round_, ATTACK_STREAM),
    )


def craft_messages(attack: Attack, view: AttackView) -> torch.Tensor:
    """``(t, d)``: the vector for each target (a single crafted vector is sent to all)."""
    out = attack.craft(view)
    t = view.targets.shape[0]
    if out.ndim == 1:
        return out.reshape(1, -1).expand(t, -1)
    if out.shape[0] != t:
        raise ValueError(f"attack {attack.name} returned {out.shape[0]} vectors for {t} targets")
    return out
