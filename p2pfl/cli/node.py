"""``p2pfl node``: run one node of a scenario as this process.

::

    p2pfl node SCENARIO.toml --id K [--out DIR] [--keys DIR | --insecure] [--resume]

The scenario must name a topology file with an address for this node and its
neighbours (``topology.file``); the node binds its own address, connects to its
neighbours, and runs every round (see :mod:`p2pfl.node`). It writes
``DIR/node-K.jsonl`` (events) and ``DIR/node-K.npy`` (final parameters).
SIGINT/SIGTERM/SIGHUP stop it cleanly (bye to neighbours, log flushed; exit 128+signal).
An address already in use is one line naming node and address, exit code 2.
``--parent-pid P`` (what ``p2pfl launch`` passes) stops it as on SIGTERM when
process P, its parent, ends, even by SIGKILL (:mod:`p2pfl.lifeline`).
With ``network.checkpoint_every = k`` it checkpoints into ``DIR/checkpoints`` every
``k`` rounds; ``--resume`` (same ``--out``) restarts from the newest one and
catches up with its neighbours' round (no checkpoint: a warning, round 1).
"""

from __future__ import annotations

import argparse
from typing import Any

from p2pfl.cli.common import add_scenario_arguments, output_dir, scenario_from_args
from p2pfl.errors import ConfigError


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "node",
        help="run one node of a scenario (its address from the topology file)",
        description="Run node --id of the scenario as this process: hello to its neighbours, "
        "every round, bye. The scenario's topology.file gives the addresses.",
    )
    add_scenario_arguments(p)
    p.add_argument("--id", dest="node_id", type=int, required=True, metavar="K", help="node id")
    p.add_argument("--out", default=None, help="output directory (default: runs/node-NAME-TIME)")
    p.add_argument(
        "--keys", default=None, metavar="DIR", help="directory holding this node's CurveZMQ keys"
    )
    p.add_argument(
        "--insecure",
        action="store_true",
        help="run without CurveZMQ (unencrypted, unauthenticated links)",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="restart from the newest checkpoint in OUT/checkpoints and catch up with the "
        "neighbours (no checkpoint: warn and start at round 1)",
    )
    p.add_argument(
        "--events", action="store_true", help="also print every event as a JSON line on stdout"
    )
    p.add_argument(
        "--parent-pid",
        type=int,
        default=None,
        metavar="PID",
        help="stop (as on SIGTERM) when process PID, the one that started this node, ends "
        "(p2pfl launch passes its own)",
    )
    return p


def run(args: argparse.Namespace) -> int:
    if args.parent_pid is not None:
        import signal
        import sys

        from p2pfl.lifeline import follow_parent

        if not follow_parent(args.parent_pid):
            print(
                f"node {args.node_id}: process {args.parent_pid}, which started it, is gone; "
                "not starting",
                file=sys.stderr,
            )
            return 128 + signal.SIGTERM
    from p2pfl.node.metrics import read_node_log
    from p2pfl.node.process import log_path, run_node_process

    if args.resume and not args.out:
        raise ConfigError("--resume needs --out DIR: the output directory of the run to resume")
    scenario = scenario_from_args(args)
    out = output_dir(args.out, scenario, "node")
    code = run_node_process(
        scenario,
        args.node_id,
        out,
        key_dir=args.keys,
        insecure=args.insecure,
        echo_events=args.events,
        resume=args.resume,
    )
    if not args.events:
        evals = [e for e in read_node_log(log_path(out, args.node_id)) if e["event"] == "eval"]
        last = (
            f", accuracy {evals[-1]['accuracy']:.4f} after round {evals[-1]['round']}"
            if evals
            else ""
        )
        print(
            f"node {args.node_id}: {'done' if code == 0 else f'stopped (exit {code})'}{last}; outputs: {out}"
        )
    return code
