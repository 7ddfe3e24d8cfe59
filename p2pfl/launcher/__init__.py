"""Start a host's node processes, watch them, and turn what they leave into run outputs.

- :func:`plan_launch` (:mod:`p2pfl.launcher.plan`): which nodes, which topology file,
  which command line;
- :class:`NodeFleet` (:mod:`p2pfl.launcher.fleet`): the processes, always stopped;
- :func:`launch` (:mod:`p2pfl.launcher.run`): both, then the outputs;
- :mod:`p2pfl.launcher.outputs`: node logs to ``metrics.jsonl``/``summary.json``/plots,
  and the merge of several hosts' directories (``p2pfl report``).
"""

from p2pfl.launcher.fleet import NodeExit, NodeFleet
from p2pfl.launcher.outputs import MergedRuns, NodeOutputs, merge_runs, read_node_outputs
from p2pfl.launcher.plan import LaunchPlan, nodes_on_host, plan_launch
from p2pfl.launcher.run import LaunchResult, launch

__all__ = [
    "LaunchPlan",
    "LaunchResult",
    "MergedRuns",
    "NodeExit",
    "NodeFleet",
    "NodeOutputs",
    "launch",
    "merge_runs",
    "nodes_on_host",
    "plan_launch",
    "read_node_outputs",
]
