"""The networked node: one participant of decentralized learning, over a transport.

- :class:`Node` (:mod:`p2pfl.node.node`): hello, synchronous rounds, bye.
- :class:`NodeSetup` (:mod:`p2pfl.node.setup`): a node's share of an experiment.
- :class:`RoundInbox` (:mod:`p2pfl.node.inbox`): received vectors by round.
- :class:`Outbox` (:mod:`p2pfl.node.outbox`): one ordered, bounded queue per neighbour.
- :class:`NodeLog`, :class:`NodeCounters` (:mod:`p2pfl.node.metrics`): its JSON-lines log.
- :func:`run_node_process` (:mod:`p2pfl.node.process`): a node as an OS process.
"""

from p2pfl.node.inbox import RoundInbox
from p2pfl.node.metrics import NodeCounters, NodeLog, eval_records, read_node_log
from p2pfl.node.node import Node, NodeResult
from p2pfl.node.outbox import Outbox
from p2pfl.node.process import run_node_process
from p2pfl.node.setup import NodeSetup, Role

__all__ = [
    "Node",
    "NodeCounters",
    "NodeLog",
    "NodeResult",
    "NodeSetup",
    "Outbox",
    "Role",
    "RoundInbox",
    "eval_records",
    "read_node_log",
    "run_node_process",
]
