"""Authenticated, encrypted links between nodes (CurveZMQ) and their key files.

- :mod:`p2pfl.security.keys`: one key pair per node on disk (``p2pfl keys generate``).
- :mod:`p2pfl.security.auth`: the ZAP allow-list, socket configuration, and which
  node authenticated each incoming message.

See ``docs/security.md`` for the threat model.
"""

from p2pfl.security.auth import (
    ZAP_DOMAIN,
    CurveHook,
    NodeAuthenticator,
    SecurityContext,
    check_claimed_sender,
    security_for_node,
)
from p2pfl.security.keys import (
    KeyFileError,
    KeyPair,
    check_public_keys,
    generate_keys,
    load_node_keys,
    load_public_key,
    public_key_path,
    secret_key_path,
    write_key_pair,
)

__all__ = [
    "ZAP_DOMAIN",
    "CurveHook",
    "KeyFileError",
    "KeyPair",
    "NodeAuthenticator",
    "SecurityContext",
    "check_claimed_sender",
    "check_public_keys",
    "generate_keys",
    "load_node_keys",
    "load_public_key",
    "public_key_path",
    "secret_key_path",
    "security_for_node",
    "write_key_pair",
]
