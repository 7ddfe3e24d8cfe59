"""The simulator over ``torch.distributed``: one simulation, its nodes spread over ranks.

``torchrun --nproc-per-node K -m p2pfl sim SCENARIO --out DIR`` (or across machines
with torchrun's ``--nnodes``/``--rdzv-endpoint``) starts ``K`` ranks. Each builds the
same :class:`~p2pfl.experiment.Experiment` (same seed, same data, same graph),
computes the same :class:`~p2pfl.sim.partition.Partition`, and simulates only its
nodes with the single-process code (:class:`~p2pfl.sim.engine.Simulation`: local
SGD, attacks, batched aggregation). Per round a rank

1. trains its nodes (``local_steps`` on its rows and shards);
2. agrees with the others on which nodes diverged (one scalar all-reduce; a mask
   all-reduce only in a round where some node diverged);
3. exchanges the halo (:mod:`p2pfl.sim.halo`, phase 1): the trained vectors its
   aggregating nodes, its attackers and its Byzantine nodes read from other ranks,
   point to point (``batch_isend_irecv``);
4. crafts its attackers' messages (an omniscient attacker's Fang reference, the
   mean honest model before the round, is one all-reduce of a ``d``-vector) and
   sends the crafted rows addressed to other ranks' nodes (phase 2);
5. aggregates its nodes exactly as the single process does.

An evaluation scores each rank's nodes and sums the per-node metrics into every
rank (one all-reduce of ``4 N`` floats); rank 0 writes the outputs. The numbers
are those of the single process for the same scenario and seed (per node every
computation is the same; only the order of a few float sums differs: the honest
mean of ``distance_to_mean`` and of an omniscient Fang reference).

Backends: gloo on CPU, NCCL when ``run.device`` is a CUDA device (each rank uses
``cuda:LOCAL_RANK``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist

from p2pfl.experiment import Experiment
from p2pfl.rounds import craft_messages
from p2pfl.sim.engine import SimResult, Simulation
from p2pfl.sim.halo import HaloRoutes, halo_routes
from p2pfl.sim.partition import Partition, partition_nodes

#: torchrun (torch.distributed.run) sets these in every rank's environment.
TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


def launched_by_torchrun(env: Mapping[str, str] | None = None) -> bool:
    """This process is a rank started by torchrun (``RANK`` and ``WORLD_SIZE`` are set)."""
    env = os.environ if env is None else env
    return "RANK" in env and "WORLD_SIZE" in env


@dataclass
class Comm:
    """This rank's view of the process group; counts the halo bytes it sends."""

    rank: int
    world: int
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    sent_bytes: int = 0
    rounds: int = 0
    _pending: list[dist.P2POp] = field(default_factory=list, repr=False)

    @classmethod
    def start(cls, device: torch.device, timeout_s: float = 600.0) -> Comm:
        """Join the process group torchrun described in the environment (gloo or NCCL)."""
        import datetime

        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        if not dist.is_initialized():
            dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout_s))
        return cls(rank=dist.get_rank(), world=dist.get_world_size(), device=device)

    def close(self) -> None:
        if dist.is_initialized():
            dist.destroy_process_group()

    def exchange(
        self,
        source: torch.Tensor,
        sends: Mapping[int, torch.Tensor],
        table: torch.Tensor,
        recvs: Mapping[int, torch.Tensor],
    ) -> None:
        """Send ``source[sends[p]]`` to each peer ``p``; write what ``p`` sends at ``table[recvs[p]]``."""
        ops, buffers = [], []
        for p, idx in sends.items():
            out = source[idx]
            self.sent_bytes += out.numel() * out.element_size()
            ops.append(dist.P2POp(dist.isend, out, p))
        for p, idx in recvs.items():
            buf = table.new_empty((idx.numel(), table.shape[1]))
            buffers.append((idx, buf))
            ops.append(dist.P2POp(dist.irecv, buf, p))
        if not ops:
            return
        for work in dist.batch_isend_irecv(ops):
            work.wait()
        for idx, buf in buffers:
            table[idx] = buf

    def sum(self, t: torch.Tensor) -> torch.Tensor:
        """Every rank's ``t`` summed (in place, returned)."""
        if self.world > 1:
            on = t.to(self.device)  # NCCL reduces CUDA tensors only
            dist.all_reduce(on, op=dist.ReduceOp.SUM)
            if on is not t:
                t.copy_(on)
        return t


class DistributedSimulation(Simulation):
    """A :class:`Simulation` of this rank's nodes that exchanges halos with the other ranks.

    ``params``, ``momentum`` and ``last_loss`` hold this rank's nodes (ascending
    ids); plans, divergence and metrics are global and identical on every rank.
    """

    def __init__(self, experiment: Experiment, comm: Comm) -> None:
        self.comm = comm
        self.partition: Partition = partition_nodes(
            experiment.topology.graph, comm.world, experiment.seed
        )
        nodes = self.partition.nodes_of(comm.rank)
        self._collective_result = True
        self._positions = torch.full((experiment.n,), -1, dtype=torch.int64)
        self._positions[nodes] = torch.arange(nodes.numel())
        super().__init__(experiment, nodes=nodes, device=comm.device)

    def _replan(self) -> None:
        super()._replan()
        self.routes: HaloRoutes = halo_routes(
            self.plan,
            [g for g, _ in self._geometry],
            self.partition.owner,
            self.comm.rank,
            self.comm.world,
        )
        self.table_plan = self.routes.plan
        self._groups = self.table_plan.groups  # no compression here: own rows in the table
        self._own_attackers = frozenset(self.table_plan.attackers)
        mine = self.partition.owner[self._alive_honest] == self.comm.rank
        self._own_alive = self._positions[self._alive_honest[mine]]

    def _position(self, nodes: torch.Tensor) -> torch.Tensor:
        return self._positions[nodes]

    def _divergence(self, trained: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        bad, broken = super()._divergence(trained)
        flags = torch.stack([bad, broken]).to(torch.float32)
        if not float(self.comm.sum(flags.sum().reshape(1))[0]):
            none = torch.zeros(self.exp.n, dtype=torch.bool)
            return none, none
        every = self._every_node(flags)
        return every[0] > 0, every[1] > 0

    def _honest_mean(self) -> torch.Tensor:
        rows = self.params[self._own_alive]
        total = self.comm.sum(rows.sum(0, dtype=torch.float64))
        return (total / self._alive_honest.numel()).to(self.params.dtype)

    def _every_node(self, per_row: torch.Tensor) -> torch.Tensor:
        out = per_row.new_zeros((per_row.shape[0], self.exp.n))
        out[:, self._nodes] = per_row
        return self.comm.sum(out)

    def _sent_rows(self, trained: torch.Tensor, r: int) -> torch.Tensor:
        """Counts the bytes this rank's senders send (no compression here: ``trained``)."""
        owner, rank = self.partition.owner, self.comm.rank
        mine = [i for i in self._senders if int(owner[i]) == rank]
        self.channel.count_dense(trained, r, mine, self._positions[mine].tolist())
        return trained

    def _bytes_sent(self) -> list[int]:
        """Every node's bytes sent (each rank counted its own nodes); local when interrupted."""
        mine = torch.tensor(self.channel.bytes_sent, dtype=torch.int64)
        if not self._collective_result:
            return mine.tolist()
        return [int(b) for b in self.comm.sum(mine).tolist()]

    def _message_table(
        self, trained: torch.Tensor, seen: torch.Tensor, r: int
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """This rank's message table (:mod:`p2pfl.sim.halo`), and the rows its nodes drop."""
        exp, routes, comm = self.exp, self.routes, self.comm
        table = trained.new_empty((routes.rows, trained.shape[1]))
        table[: trained.shape[0]] = trained
        comm.exchange(trained, routes.send_nodes, table, routes.recv_nodes)
        comm.rounds += 1
        if not self.plan.attackers:
            return table, None
        assert exp.attack is not None
        # Every rank takes part in the all-reduce, attackers or not.
        honest_before = (
            self._honest_mean() if self._omniscient and self._alive_honest.numel() else None
        )
        crafted = trained.new_empty((routes.crafted_rows.numel(), trained.shape[1]))
        lookup = routes.lookup

        def vectors(ids: torch.Tensor) -> torch.Tensor:
            return table[lookup[ids]].cpu()  # attacks craft on the CPU (their generators are)

        start = 0
        for geometry, f_view in self._geometry:
            if geometry.attacker not in self._own_attackers:
                continue
            own_before = self.params[int(self._positions[geometry.attacker])]
            before = own_before if honest_before is None else honest_before
            view = geometry.view(vectors, f_view, exp.seed, r, before=before.cpu())
            t = len(geometry.targets)
            crafted[start : start + t] = craft_messages(exp.attack, view)
            self.channel.count_crafted(
                geometry.attacker, geometry.targets, crafted[start : start + t], r
            )
            start += t
        table[routes.keep_at] = crafted[routes.keep_crafted]
        comm.exchange(crafted, routes.send_crafted, table, routes.recv_crafted)
        bad_extra = ~torch.isfinite(table[routes.extra_start :]).all(1).cpu()
        if not bool(bad_extra.any()):
            return table, None
        dropped = torch.zeros(table.shape[0], dtype=torch.bool)
        dropped[routes.extra_start :] = bad_extra
        return table, dropped

    def result(self, wall_seconds: float, interrupted: bool = False) -> SimResult:
        """The run so far; an interrupted run's (the other ranks may be gone) communicates
        nothing: its ``params`` are this rank's rows, its halo figures left out."""
        self._collective_result = not interrupted
        return super().result(wall_seconds, interrupted)

    def _all_params(self) -> torch.Tensor:
        """Rank 0: every node's vector (each rank sends it its rows); other ranks: their own."""
        comm = self.comm
        if comm.world == 1 or not self._collective_result:
            return self.params
        owner = self.partition.owner
        if comm.rank != 0:
            ops = [dist.P2POp(dist.isend, self.params.contiguous(), 0)]
            for work in dist.batch_isend_irecv(ops):
                work.wait()
            return self.params
        full = self.params.new_empty((self.exp.n, self.params.shape[1]))
        full[self._nodes] = self.params
        parts = []
        for p in range(1, comm.world):
            nodes = (owner == p).nonzero().flatten()
            parts.append((nodes, self.params.new_empty((nodes.numel(), self.params.shape[1]))))
        ops = [dist.P2POp(dist.irecv, buf, p) for p, (_, buf) in enumerate(parts, start=1)]
        for work in dist.batch_isend_irecv(ops):
            work.wait()
        for nodes, buf in parts:
            full[nodes] = buf
        return full

    def _distribution(self) -> dict[str, Any]:
        """``summary.json``'s ``distributed``: the partition and this rank's halo traffic."""
        if not self._collective_result:
            return self.partition.describe()
        d = self.params.shape[1]
        sent = torch.tensor(
            [self.routes.bytes_per_round(d), self.comm.sent_bytes], dtype=torch.int64
        )
        per_round, total = self.comm.sum(sent).tolist()
        return {
            **self.partition.describe(),
            "halo_bytes_per_round": per_round,
            "halo_bytes_sent": total,
        }
