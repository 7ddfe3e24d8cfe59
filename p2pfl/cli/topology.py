"""``p2pfl topology``: generate, validate, describe, draw and import topology files.

::

    p2pfl topology generate ring --n 8 -o ring-8.toml
    p2pfl topology generate random_regular --n 16 --param degree=4 \\
        --byzantine 3 --placement cut_vertex --base-port 5555 -o rr16.toml
    p2pfl topology validate topologies/*.toml
    p2pfl topology describe rr16.toml
    p2pfl topology draw rr16.toml -o rr16.png
    p2pfl topology import graph.graphml -o graph.toml
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from p2pfl.errors import ConfigError, TopologyError

MAX_PORT = 65535


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    # No p2pfl.topology import here: building the parser must stay cheap for every command.
    p = subparsers.add_parser(
        "topology",
        help="generate, validate, describe, draw or import topology files",
        description="Work with topology TOML files (format: docs/topology-format.md).",
    )
    sub = p.add_subparsers(dest="topology_command", metavar="SUBCOMMAND", required=True)

    gen = sub.add_parser(
        "generate",
        help="build a topology and write it as TOML",
        description="Build a topology. `p2pfl topology list` shows every KIND and its parameters.",
    )
    gen.add_argument("kind", metavar="KIND", help="builder name")
    gen.add_argument("--n", type=int, required=True, help="number of nodes")
    gen.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="builder parameter (repeatable), e.g. --param degree=4; "
        "values parse as int, float, bool or string",
    )
    gen.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    gen.add_argument("--name", default=None, help="topology name (default KIND-N)")
    _add_decoration_arguments(gen)
    gen.add_argument("-o", "--output", required=True, metavar="FILE.toml", help="file to write")

    imp = sub.add_parser(
        "import",
        help="convert an edge list, GraphML or node-link JSON file to topology TOML",
        description="Import a graph (.edges/.edgelist/.txt, .graphml, .json).",
    )
    imp.add_argument("graph_file", metavar="GRAPHFILE")
    imp.add_argument(
        "--relabel", action="store_true", help="renumber node ids 0..n-1 in sorted order"
    )
    imp.add_argument("--name", default=None, help="topology name (default: the file's stem)")
    imp.add_argument("--seed", type=int, default=0, help="seed of the Byzantine placement")
    _add_decoration_arguments(imp)
    imp.add_argument("-o", "--output", required=True, metavar="FILE.toml", help="file to write")

    sub.add_parser("list", help="list the topology builders and placements with their parameters")

    val = sub.add_parser("validate", help="check topology files; exit 2 if any is invalid")
    val.add_argument("files", nargs="+", metavar="FILE")

    desc = sub.add_parser("describe", help="print a table of a topology's statistics")
    desc.add_argument("file", metavar="FILE")

    drw = sub.add_parser("draw", help="draw a topology to a PNG file")
    drw.add_argument("file", metavar="FILE")
    drw.add_argument("-o", "--output", required=True, metavar="OUT.png")
    return p


def _add_decoration_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--byzantine", type=int, default=0, metavar="COUNT", help="Byzantine nodes")
    p.add_argument(
        "--placement",
        default="random",
        metavar="NAME",
        help="where the Byzantine nodes sit (default random; see p2pfl topology list)",
    )
    p.add_argument(
        "--placement-param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="placement parameter (repeatable), e.g. --placement-param victim=0",
    )
    p.add_argument(
        "--base-port",
        type=int,
        default=None,
        metavar="P",
        help="give node i the address HOST:P+i",
    )
    p.add_argument("--host", default="127.0.0.1", help="host of the addresses (default 127.0.0.1)")


def parse_value(text: str) -> int | float | bool | str:
    """A ``--param`` value: int, then float, then ``true``/``false``, else the string itself."""
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    return text


def parse_params(items: Sequence[str], flag: str) -> dict[str, Any]:
    """``["k=v", ...]`` -> ``{k: parse_value(v)}``; a ConfigError names a malformed item."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"{flag} {item!r}: expected KEY=VALUE")
        if key in out:
            raise ConfigError(f"{flag} {key}: given twice")
        if key == "seed":
            raise ConfigError(f"{flag} seed: set the seed with --seed")
        out[key] = parse_value(value.strip())
    return out


def _decorate(args: argparse.Namespace, graph: Any, name: str) -> Any:
    """The Topology of ``graph`` with the requested Byzantine nodes and addresses, checked."""
    from p2pfl.topology import PLACEMENTS, Topology, check_topology

    n = graph.number_of_nodes()
    byzantine: frozenset[int] = frozenset()
    if args.byzantine < 0:
        raise ConfigError(f"--byzantine: must be >= 0, got {args.byzantine}")
    if args.byzantine:
        place = PLACEMENTS.bind(
            args.placement,
            parse_params(args.placement_param, "--placement-param"),
            "--placement-param",
        )
        byzantine = frozenset(place(graph, args.byzantine, seed=args.seed))
    elif args.placement_param:
        raise ConfigError("--placement-param: needs --byzantine COUNT")
    addresses: dict[int, str] = {}
    if args.base_port is not None:
        if args.base_port < 1 or args.base_port + n - 1 > MAX_PORT:
            raise ConfigError(
                f"--base-port {args.base_port}: ports {args.base_port}..{args.base_port + n - 1} "
                f"must lie in 1..{MAX_PORT}"
            )
        host = f"[{args.host}]" if ":" in args.host and not args.host.startswith("[") else args.host
        addresses = {i: f"{host}:{args.base_port + i}" for i in range(n)}
    t = Topology(graph=graph, addresses=addresses, byzantine=byzantine, name=name)
    check_topology(t)
    return t


def _summary(t: Any) -> str:
    return (
        f"{t.name or '(unnamed)'}: {t.n} nodes, {t.graph.number_of_edges()} edges, "
        f"{len(t.byzantine)} Byzantine, {len(t.addresses)} addresses"
    )


def _generate(args: argparse.Namespace) -> int:
    from p2pfl.topology import TOPOLOGIES, save_topology

    builder = TOPOLOGIES.bind(args.kind, parse_params(args.param, "--param"), "--param")
    graph = builder(args.n, seed=args.seed)
    t = _decorate(args, graph, args.name if args.name is not None else f"{args.kind}-{args.n}")
    save_topology(t, args.output)
    print(f"wrote {args.output}: {_summary(t)}")
    return 0


def _import(args: argparse.Namespace) -> int:
    from p2pfl.topology import import_graph, save_topology

    graph = import_graph(args.graph_file, relabel=args.relabel)
    name = args.name if args.name is not None else Path(args.graph_file).stem
    t = _decorate(args, graph, name)
    save_topology(t, args.output)
    print(f"wrote {args.output}: {_summary(t)}")
    return 0


def _validate(args: argparse.Namespace) -> int:
    from p2pfl.topology import load_topology

    status = 0
    for path in args.files:
        try:
            t = load_topology(path)
        except TopologyError as exc:
            print(f"INVALID {exc}", file=sys.stderr)
            status = 2
        else:
            print(f"OK {path}: {_summary(t)}")
    return status


def _describe(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from p2pfl.topology import check_topology, describe, load_topology

    t = load_topology(args.file, check=False)
    info = describe(t)
    try:
        check_topology(t)
        verdict = "valid"
    except TopologyError as exc:
        verdict = f"invalid: {exc}"
    table = Table(title=f"{args.file}")
    table.add_column("property")
    table.add_column("value", justify="right")
    for key, value in info.items():
        shown = f"{value:.6g}" if isinstance(value, float) else str(value)
        table.add_row(key.replace("_", " "), shown)
    table.add_row("check", verdict)
    Console().print(table)
    return 0


def _draw(args: argparse.Namespace) -> int:
    from p2pfl.topology import draw, load_topology

    t = load_topology(args.file, check=False)
    draw(t, args.output)
    print(f"wrote {args.output}")
    return 0


def _list(args: argparse.Namespace) -> int:
    import inspect

    from rich.console import Console
    from rich.table import Table

    from p2pfl.registry import Registry, tunable_parameters
    from p2pfl.topology import PLACEMENTS, TOPOLOGIES

    console = Console()
    registry: Registry[Any]
    for title, registry in (("topology builders (KIND)", TOPOLOGIES), ("placements", PLACEMENTS)):
        table = Table(title=title)
        for col in ("name", "parameters", "summary"):
            table.add_column(col)
        for name in registry.names():
            fn = registry[name]
            params = ", ".join(
                f"{k}={p.default!r}" for k, p in tunable_parameters(fn).items() if k != "seed"
            )
            summary = (
                (inspect.getdoc(fn) or "").split("\n\n")[0].replace("\n", " ").replace("``", "")
            )
            table.add_row(name, params or "-", summary)
        console.print(table)
    return 0


SUBCOMMANDS = {
    "list": _list,
    "generate": _generate,
    "import": _import,
    "validate": _validate,
    "describe": _describe,
    "draw": _draw,
}


def run(args: argparse.Namespace) -> int:
    return SUBCOMMANDS[args.topology_command](args)
