"""``p2pfl launch`` as a library call: start a plan's nodes, watch them, write the outputs.

A node that exits with code 2 (:data:`EXIT_CONFIG`: ``p2pfl node``'s exit code for a
configuration error, an address in use among them) cannot take part in the run and
the others would wait for it: the whole fleet is stopped at once and the result
says which node (:attr:`LaunchResult.aborted_by`); no outputs are written then.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from p2pfl.launcher.fleet import NodeExit, NodeFleet
from p2pfl.launcher.outputs import NodeOutputs, add_final_distances, read_node_outputs, write_run
from p2pfl.launcher.plan import LaunchPlan

EXIT_CONFIG = 2

#: ``handler(fleet, node, event)``: called for every event line a node prints.
FleetEventHandler = Callable[[NodeFleet, int, dict[str, Any]], None]


@dataclass(frozen=True)
class LaunchResult:
    """Exits of the node processes, what they left, and the summary (None: no records,
    or stopped at start-up because of ``aborted_by``)."""

    exits: list[NodeExit]
    outputs: NodeOutputs
    summary: dict[str, Any] | None
    wall_seconds: float
    aborted_by: NodeExit | None = None

    @property
    def failed(self) -> list[NodeExit]:
        return [e for e in self.exits if not e.ok]


async def launch(
    plan: LaunchPlan,
    *,
    on_event: FleetEventHandler | None = None,
    on_started: Callable[[NodeFleet], None] | None = None,
    plots: bool = True,
    stop_grace_s: float = 5.0,
) -> LaunchResult:
    """Run every node of ``plan`` as a process until all exit; write ``plan.out``'s outputs.

    ``on_event(fleet, node, event)`` sees every event a node prints; ``on_started(fleet)``
    runs once every process is started. Cancelling stops every node (SIGTERM, then
    SIGKILL after ``stop_grace_s``) before the cancellation propagates.
    """
    commands = {k: plan.node_command(k) for k in plan.nodes}
    holder: list[NodeFleet] = []

    def forward(node: int, event: dict[str, Any]) -> None:
        if on_event is not None and holder:
            on_event(holder[0], node, event)

    start = time.perf_counter()
    fleet = NodeFleet(commands, plan.node_dir, on_event=forward, stop_grace_s=stop_grace_s)
    async with fleet:
        holder.append(fleet)
        if on_started is not None:
            on_started(fleet)
        exits = await fleet.wait(abort_if=lambda e: e.returncode == EXIT_CONFIG)
    wall = time.perf_counter() - start
    exp = plan.experiment
    outputs = read_node_outputs(plan.node_dir, plan.nodes)
    if fleet.aborted_by is not None:
        return LaunchResult(exits, outputs, None, wall, fleet.aborted_by)
    add_final_distances(outputs.records, outputs.params, exp.byzantine, plan.scenario.run.rounds)
    summary = None
    if any(not r["byzantine"] for r in outputs.records):
        summary = write_run(
            plan.out,
            outputs.records,
            plan.scenario.to_dict(),
            wall,
            extra={
                "run_id": plan.run_id,
                "mode": "launch",
                "nodes": exp.n,
                "nodes_here": list(plan.nodes),
                "byzantine_nodes": sorted(exp.byzantine),
                "parameters": exp.parameters,
                "shared_parameters": exp.shared_parameters,
                "topology_file": str(plan.topology_file),
                "secure": not plan.insecure,
                "node_exits": {str(e.node): e.reason for e in exits},
                "node_counters": {str(k): v for k, v in sorted(outputs.ends.items())},
            },
            topology=dataclasses.replace(plan.topology, byzantine=exp.byzantine),
            title=plan.scenario.run.name,
            plots=plots,
        )
    return LaunchResult(exits, outputs, summary, wall)
