"""``p2pfl keys generate``: one CurveZMQ key pair per node, public keys into the topology.

::

    p2pfl keys generate --topology ring.toml --dir keys/

writes ``keys/node-<id>.key`` (public) and ``keys/node-<id>.key_secret`` (secret,
mode 0600, ignored by git through ``keys/.gitignore``) for every node of
``ring.toml``, says where the secrets are, and records each public key in that
file (``public_key`` of each ``[[nodes]]`` table). Existing key files, or public
keys already in the topology, are never replaced without ``--force``. Copy each
secret file only to the machine of its node; see ``docs/security.md``.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

from p2pfl.errors import ConfigError


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "keys",
        help="create CurveZMQ key pairs for the nodes of a topology",
        description="Manage the CurveZMQ keys that authenticate and encrypt node links.",
    )
    sub = p.add_subparsers(dest="keys_command", metavar="ACTION")
    g = sub.add_parser(
        "generate",
        help="one key pair per node; record the public keys in the topology file",
        description="Write D/node-<id>.key and D/node-<id>.key_secret (mode 0600) for every "
        "node of the topology, and record each public key in the topology file.",
    )
    g.add_argument("--topology", required=True, metavar="T.toml", help="topology file to update")
    g.add_argument("--dir", required=True, metavar="D", help="directory for the key files")
    g.add_argument(
        "--force",
        action="store_true",
        help="replace existing key files and public keys already in the topology",
    )
    return p


def run(args: argparse.Namespace) -> int:
    if getattr(args, "keys_command", None) != "generate":
        raise ConfigError("keys: missing action; usage: p2pfl keys generate --topology T --dir D")
    from p2pfl.security.keys import GITIGNORE, generate_keys
    from p2pfl.topology import load_topology, save_topology

    topology = load_topology(args.topology)
    if topology.public_keys and not args.force:
        raise ConfigError(
            f"{args.topology} already records public keys for {len(topology.public_keys)} "
            "node(s); pass --force to replace them (nodes holding the old keys will be refused)"
        )
    public_keys = generate_keys(args.dir, topology.graph.nodes, force=args.force)
    save_topology(dataclasses.replace(topology, public_keys=public_keys), args.topology)
    print(
        f"wrote {len(public_keys)} key pair(s) to {args.dir} and recorded the public keys "
        f"in {args.topology}\n"
        f"secret keys: {Path(args.dir) / 'node-*.key_secret'} (mode 0600; {GITIGNORE} there keeps "
        "them out of git): keep them private, and copy each only to its own node's machine"
    )
    return 0
