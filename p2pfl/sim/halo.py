"""Halo routes: which vectors each rank of a distributed simulation sends to which.

A round's message table (:mod:`p2pfl.sim.plan`) has one row per node (its trained
vector) and one per (vector attacker, target) pair (the crafted vector). Rank ``r``
holds the rows of its own nodes and reads, from other ranks, only

* the trained vectors of the senders of its aggregating nodes (its graph boundary),
* the trained vectors an attacker it owns looks at (:class:`~p2pfl.rounds.AttackGeometry`:
  itself, the honest vectors it sees, its targets and their neighbours; with
  omniscient knowledge every honest vector),
* the honest neighbours' vectors its non-protocol nodes average (their next state),

in one exchange (*phase 1*), then, after its attackers have crafted, the crafted
rows addressed to its nodes by attackers on other ranks (*phase 2*).

Every rank computes every rank's needs from the same plan, so the routes agree
without a message: what ``p`` sends ``q`` is exactly, in the same order (ascending
global row), what ``q`` expects from ``p``. Rank ``r``'s table is laid out as its own
nodes (ascending ids), then the halo rows of phase 1, then the crafted rows it reads;
:attr:`HaloRoutes.lookup` maps a global table row to its row there (-1: not held).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from p2pfl.rounds import AttackGeometry
from p2pfl.sim.plan import AggregationGroup, RoundPlan


@dataclass(frozen=True)
class HaloRoutes:
    """One rank's share of a plan (module docstring). Index tensors are int64."""

    lookup: torch.Tensor  # (N + extra,) global table row -> local table row, -1 if absent
    rows: int  # local table rows
    extra_start: int  # first local row holding a crafted vector
    send_nodes: dict[int, torch.Tensor]  # peer -> positions in this rank's params (phase 1)
    recv_nodes: dict[int, torch.Tensor]  # peer -> local table rows (phase 1)
    crafted_rows: torch.Tensor  # global extra rows this rank crafts, ascending
    send_crafted: dict[int, torch.Tensor]  # peer -> positions in the crafted block (phase 2)
    recv_crafted: dict[int, torch.Tensor]  # peer -> local table rows (phase 2)
    keep_crafted: torch.Tensor  # positions in the crafted block this rank reads itself
    keep_at: torch.Tensor  # ... and the local table rows they go to
    plan: RoundPlan  # the plan in local table coordinates (byzantine_nodes: params rows)

    def bytes_per_round(self, d: int, itemsize: int = 4) -> int:
        """Bytes this rank sends per round (both phases)."""
        rows = sum(int(t.numel()) for t in self.send_nodes.values())
        rows += sum(int(t.numel()) for t in self.send_crafted.values())
        return rows * d * itemsize


def _rank_needs(
    plan: RoundPlan, geometries: Sequence[AttackGeometry], owner: torch.Tensor, ranks: int
) -> list[torch.Tensor]:
    """For each rank, the sorted global table rows it reads (own node rows included)."""
    parts: list[list[torch.Tensor]] = [[] for _ in range(ranks)]
    for g in plan.groups:
        by = owner[g.nodes]
        for r in by.unique().tolist():
            parts[r].append(g.rows[by == r].flatten())
    for geo in geometries:
        parts[int(owner[geo.attacker])].append(geo._ids)
    if plan.byzantine_nodes.numel():
        mix = plan.byzantine_mixing.coalesce()
        row, col = mix.indices()
        by = owner[plan.byzantine_nodes[row]]
        for r in by.unique().tolist():
            parts[r].append(col[by == r])
    empty = torch.zeros(0, dtype=torch.int64)
    return [torch.cat(p).unique() if p else empty for p in parts]


def _extra_owner(plan: RoundPlan, owner: torch.Tensor, n: int) -> torch.Tensor:
    """``(extra,)``: the rank of the attacker that crafts each crafted row."""
    out = torch.empty(plan.extra_rows, dtype=torch.int64)
    for b in plan.attackers:
        start = plan.attacker_rows[b] - n
        out[start : start + len(plan.attacker_targets[b])] = owner[b]
    return out


def _local_group(g: AggregationGroup, keep: torch.Tensor, lookup: torch.Tensor) -> AggregationGroup:
    return AggregationGroup(
        nodes=g.nodes[keep],
        rows=lookup[g.rows[keep]],
        weights=g.weights[keep],
        f=g.f,
        senders=g.senders[keep],
        byzantine=g.byzantine[keep],
    )


def halo_routes(
    plan: RoundPlan,
    geometries: Sequence[AttackGeometry],
    owner: torch.Tensor,
    rank: int,
    ranks: int,
) -> HaloRoutes:
    """Rank ``rank``'s routes for ``plan`` (global coordinates) under the partition ``owner``."""
    n = owner.numel()
    mine = (owner == rank).nonzero().flatten()
    position = torch.full((n,), -1, dtype=torch.int64)
    position[mine] = torch.arange(mine.numel())
    needs = _rank_needs(plan, geometries, owner, ranks)
    extra_owner = _extra_owner(plan, owner, n)

    def node_rows(r: int) -> torch.Tensor:
        rows = needs[r]
        return rows[rows < n]

    def extra_rows(r: int) -> torch.Tensor:
        rows = needs[r]
        return rows[rows >= n]

    lookup = torch.full((n + plan.extra_rows,), -1, dtype=torch.int64)
    lookup[mine] = torch.arange(mine.numel())
    at = mine.numel()
    send_nodes: dict[int, torch.Tensor] = {}
    recv_nodes: dict[int, torch.Tensor] = {}
    own_needs = node_rows(rank)
    for p in range(ranks):
        if p == rank:
            continue
        theirs = node_rows(p)
        out = theirs[owner[theirs] == rank]
        if out.numel():
            send_nodes[p] = position[out]
        inc = own_needs[owner[own_needs] == p]
        if inc.numel():
            lookup[inc] = torch.arange(at, at + inc.numel())
            recv_nodes[p] = lookup[inc]
            at += inc.numel()

    extra_start = at
    crafted_rows = (extra_owner == rank).nonzero().flatten() + n
    crafted_pos = torch.full((n + plan.extra_rows,), -1, dtype=torch.int64)
    crafted_pos[crafted_rows] = torch.arange(crafted_rows.numel())
    own_extra = extra_rows(rank)
    keep = own_extra[extra_owner[own_extra - n] == rank]
    lookup[keep] = torch.arange(at, at + keep.numel())
    at += keep.numel()
    send_crafted: dict[int, torch.Tensor] = {}
    recv_crafted: dict[int, torch.Tensor] = {}
    for p in range(ranks):
        if p == rank:
            continue
        theirs = extra_rows(p)
        out = theirs[extra_owner[theirs - n] == rank]
        if out.numel():
            send_crafted[p] = crafted_pos[out]
        inc = own_extra[extra_owner[own_extra - n] == p]
        if inc.numel():
            lookup[inc] = torch.arange(at, at + inc.numel())
            recv_crafted[p] = lookup[inc]
            at += inc.numel()

    groups = []
    for g in plan.groups:
        sel = owner[g.nodes] == rank
        if bool(sel.any()):
            groups.append(_local_group(g, sel, lookup))
    byz_nodes, byz_mix = _local_byzantine(plan, owner, rank, position, lookup, at)
    local = RoundPlan(
        groups=groups,
        attackers=[b for b in plan.attackers if int(owner[b]) == rank],
        attacker_targets=plan.attacker_targets,
        attacker_rows=plan.attacker_rows,
        extra_rows=plan.extra_rows,
        byzantine_nodes=byz_nodes,
        byzantine_mixing=byz_mix,
        muted=plan.muted,
    )
    return HaloRoutes(
        lookup=lookup,
        rows=at,
        extra_start=extra_start,
        send_nodes=send_nodes,
        recv_nodes=recv_nodes,
        crafted_rows=crafted_rows,
        send_crafted=send_crafted,
        recv_crafted=recv_crafted,
        keep_crafted=crafted_pos[keep],
        keep_at=lookup[keep],
        plan=local,
    )


def _local_byzantine(
    plan: RoundPlan,
    owner: torch.Tensor,
    rank: int,
    position: torch.Tensor,
    lookup: torch.Tensor,
    width: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """This rank's non-protocol nodes (rows of its params) and their ``(B, width)`` mixing."""
    nodes = plan.byzantine_nodes
    sel = owner[nodes] == rank if nodes.numel() else torch.zeros(0, dtype=torch.bool)
    mine = nodes[sel]
    if not mine.numel():
        return mine, torch.zeros((0, width))
    mix = plan.byzantine_mixing.coalesce()
    row, col = mix.indices()
    new_row = torch.full((nodes.numel(),), -1, dtype=torch.int64)
    new_row[sel] = torch.arange(mine.numel())
    keep = sel[row]
    local = torch.sparse_coo_tensor(
        torch.stack([new_row[row[keep]], lookup[col[keep]]]),
        mix.values()[keep],
        (mine.numel(), width),
        check_invariants=True,
    ).coalesce()
    return position[mine], local
