"""Entry point of the ``p2pfl`` command.

Each command lives in its own module exposing ``add_parser(subparsers)`` and
``run(args) -> int``; :data:`COMMANDS` below is the one place they are registered.
Errors that come from the user's input (:class:`~p2pfl.errors.ConfigError`,
``DataError``, ``TopologyError``) print one line and exit with code 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from p2pfl.errors import ConfigError, DataError, NodeFailure, P2PFLError, TopologyError

# command name -> module (imported only when that command runs, to keep start-up fast)
COMMANDS: dict[str, str] = {
    "sim": "p2pfl.cli.sim",
    "topology": "p2pfl.cli.topology",
    "node": "p2pfl.cli.node",
    "launch": "p2pfl.cli.launch",
    "report": "p2pfl.cli.report",
    "sweep": "p2pfl.cli.sweep",
    "keys": "p2pfl.cli.keys",
}

EXIT_USAGE = 2


def build_parser(available: dict[str, object]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="p2pfl",
        description="Peer-to-peer decentralized learning with Byzantine-robust aggregation.",
    )
    from p2pfl import __version__

    parser.add_argument("--version", action="version", version=f"p2pfl {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in available.values():
        module.add_parser(sub)  # type: ignore[attr-defined]
    return parser


def _load_commands() -> dict[str, object]:
    loaded: dict[str, object] = {}
    for name, path in COMMANDS.items():
        try:
            loaded[name] = importlib.import_module(path)
        except ModuleNotFoundError as exc:
            if exc.name != path:  # a real import error inside the command: surface it
                raise
    return loaded


def main(argv: Sequence[str] | None = None) -> int:
    commands = _load_commands()
    parser = build_parser(commands)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    module = commands[args.command]
    try:
        return int(module.run(args))  # type: ignore[attr-defined]
    except (ConfigError, DataError, TopologyError) as exc:
        print(f"p2pfl {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except NodeFailure as exc:
        print(f"p2pfl {args.command}: node failure: {exc}", file=sys.stderr)
        return 1
    except P2PFLError as exc:
        print(f"p2pfl {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"p2pfl {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
