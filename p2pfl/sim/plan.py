"""Static routing of one simulated round, computed once per run.

Every node's parameters are a row of one ``(N, d)`` tensor. The vectors on the
wire in a round form a *message table*: rows ``0..N-1`` are what each node would
send honestly, followed by one row per (vector attacker, target) pair. Each node
that aggregates with the rule reads its own row and its inputs from the table through an
index ``(m + 1,)``, so a whole group of nodes with the same number of inputs ``m`` and the
same ``f`` is gathered and aggregated in one batched call: the hot path loops
over groups, never over nodes.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from p2pfl.experiment import Experiment
from p2pfl.rounds import hood_weights


@dataclass(frozen=True)
class AggregationGroup:
    nodes: torch.Tensor  # (G,) node ids
    rows: torch.Tensor  # (G, m + 1) message-table rows: the node's own, then senders by id
    weights: torch.Tensor  # (G, m + 1) float32, self first
    f: int
    senders: torch.Tensor  # (G, m) sender node ids, in row order
    byzantine: torch.Tensor  # (G, m) bool: the sender is Byzantine (for oracle rules)


@dataclass(frozen=True)
class RoundPlan:
    groups: list[AggregationGroup]
    attackers: list[int]  # vector attackers, in row-block order
    attacker_targets: dict[int, list[int]]
    attacker_rows: dict[int, int]  # first extra table row of each attacker
    extra_rows: int
    byzantine_nodes: torch.Tensor  # (B,) ids of nodes that do not follow the protocol
    byzantine_mixing: torch.Tensor  # (B, N) row-normalized: own + honest neighbours
    muted: torch.Tensor  # (M,) ids of diverged nodes: they keep their own vector


def plan_on(plan: RoundPlan, device: torch.device) -> RoundPlan:
    """``plan`` with the tensors that meet vectors (weights, masks, mixing) on ``device``;
    index tensors stay on the CPU (a CUDA tensor may be indexed by CPU indices)."""
    if device.type == "cpu":
        return plan
    groups = [
        dataclasses.replace(g, weights=g.weights.to(device), byzantine=g.byzantine.to(device))
        for g in plan.groups
    ]
    return dataclasses.replace(
        plan, groups=groups, byzantine_mixing=plan.byzantine_mixing.to(device)
    )


def make_plan(
    exp: Experiment, muted: frozenset[int] = frozenset(), max_group_bytes: int = 256 << 20
) -> RoundPlan:
    """The routing of a round. ``muted`` nodes (diverged ones) neither send nor aggregate:
    their neighbours aggregate without them, and attackers craft nothing for them."""
    n = exp.n
    attackers = [b for b in exp.vector_attackers if b not in muted]
    targets: dict[int, list[int]] = {
        b: [j for j in exp.neighbours(b) if j not in muted] for b in attackers
    }
    rows: dict[int, int] = {}
    next_row = n
    for b in attackers:
        rows[b] = next_row
        next_row += len(targets[b])
    attacker_set = set(attackers)
    quiet = exp.silent | muted

    Member = tuple[int, list[int], torch.Tensor, list[int]]
    keyed: dict[tuple[int, int], list[Member]] = {}
    for i in sorted(exp.follows_protocol - muted):
        senders = [j for j in exp.neighbours(i) if j not in quiet]
        idx = [rows[j] + targets[j].index(i) if j in attacker_set else j for j in senders]
        f = int(exp.f_per_node[i])
        if muted and 1 + len(senders) < exp.aggregator.min_inputs(f):
            continue  # too few inputs left once neighbours diverged: it keeps its own vector
        w = hood_weights(exp.mixing, i, senders)
        keyed.setdefault((len(senders), f), []).append((i, idx, w, senders))

    d = exp.initial.numel()
    byzantine = torch.tensor(sorted(exp.byzantine), dtype=torch.int64)
    groups = []
    for (m, f), members in sorted(keyed.items()):
        per_node = max(1, (m + 1) * d * 4)
        chunk = max(1, max_group_bytes // per_node)
        for start in range(0, len(members), chunk):
            part = members[start : start + chunk]
            sender_ids = torch.tensor([snd for *_, snd in part], dtype=torch.int64).reshape(
                len(part), m
            )
            groups.append(
                AggregationGroup(
                    nodes=torch.tensor([i for i, *_ in part], dtype=torch.int64),
                    rows=torch.tensor([[i, *idx] for i, idx, *_ in part], dtype=torch.int64),
                    weights=torch.stack([w for _, _, w, _ in part]),
                    f=f,
                    senders=sender_ids,
                    byzantine=torch.isin(sender_ids, byzantine),
                )
            )

    others = sorted(set(range(n)) - exp.follows_protocol)
    mix = torch.zeros((len(others), n), dtype=torch.float32)
    for r, b in enumerate(others):
        honest = [j for j in exp.neighbours(b) if j not in exp.byzantine and j not in muted]
        mix[r, [b, *honest]] = 1.0 / (1 + len(honest))
    return RoundPlan(
        groups=groups,
        attackers=attackers,
        attacker_targets=targets,
        attacker_rows=rows,
        extra_rows=next_row - n,
        byzantine_nodes=torch.tensor(others, dtype=torch.int64),
        byzantine_mixing=mix.to_sparse() if others else mix,
        muted=torch.tensor(sorted(muted), dtype=torch.int64),
    )
