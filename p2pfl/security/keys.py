"""CurveZMQ key pairs: one per node, on disk, secret files readable only by their owner.

Files (for node ``3`` in directory ``D``)::

    D/node-3.key          public certificate   mode 0644 (subject to the umask)
    D/node-3.key_secret   secret certificate   mode 0600, created with that mode

Both use the ZeroMQ certificate text format of czmq and pyzmq (``zmq.auth``), so
``zmq.auth.load_certificate`` reads them too::

    #   p2pfl CurveZMQ secret key of node 3
    #   Keep this file private: mode 0600, never copied to another node.
    metadata
        node-id = "3"
    curve
        public-key = "<40 Z85 characters>"
        secret-key = "<40 Z85 characters>"

The public file is the same without the ``secret-key`` line. Keys are Z85 text
(ZeroMQ RFC 32): 40 characters that encode 32 bytes.

A secret file is created with ``os.open(..., O_CREAT | O_EXCL, 0o600)``: it is
never world-readable, not even for the instant between creation and ``chmod``.
:func:`generate_keys` also makes sure ``D/.gitignore`` ignores ``*.key_secret``
(:func:`ignore_secrets`), so a key directory inside a git work tree never has its
secrets committed by a ``git add`` of the folder.
:func:`load_node_keys` refuses a secret file that its group or others may read,
like OpenSSH does for private keys.
"""

from __future__ import annotations

import os
import re
import secrets
import stat
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import NamedTuple

import zmq

from p2pfl.errors import ConfigError

__all__ = [
    "KeyFileError",
    "KeyPair",
    "check_public_keys",
    "check_z85_key",
    "generate_keys",
    "ignore_secrets",
    "load_node_keys",
    "load_public_key",
    "public_key_path",
    "secret_key_path",
    "write_key_pair",
]

Z85_CHARS = frozenset(
    "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#"
)
KEY_CHARS = 40  # Z85 of a 32-byte Curve25519 key
MAX_KEY_FILE_BYTES = 64 * 1024  # a certificate is a few hundred bytes; refuse anything huge

SECRET_PATTERN = "*.key_secret"
GITIGNORE = ".gitignore"
_GITIGNORE_TEXT = (
    "# p2pfl: CurveZMQ secret keys stay private; copy each only to its own node's machine.\n"
    f"{SECRET_PATTERN}\n"
)

_LINE = re.compile(r'^\s*(public-key|secret-key)\s*=\s*"?([^"\s]*)"?\s*$')


class KeyFileError(ConfigError):
    """A key file is missing, unreadable, malformed, or too widely readable."""


class KeyPair(NamedTuple):
    """A node's CurveZMQ keys, Z85-encoded (40 ASCII bytes each), as pyzmq's socket options take them."""

    public: bytes
    secret: bytes


def public_key_path(directory: str | os.PathLike[str], node_id: int) -> Path:
    return Path(directory) / f"node-{node_id}.key"


def secret_key_path(directory: str | os.PathLike[str], node_id: int) -> Path:
    return Path(directory) / f"node-{node_id}.key_secret"


def check_z85_key(key: str | bytes, what: str) -> bytes:
    """``key`` as 40 Z85 bytes; :class:`KeyFileError` naming ``what`` if it is not one."""
    text = key.decode("ascii", "replace") if isinstance(key, bytes) else key
    if not isinstance(text, str):
        raise KeyFileError(f"{what}: a key must be a str, got {type(key).__name__}")
    if len(text) != KEY_CHARS or not set(text) <= Z85_CHARS:
        raise KeyFileError(f"{what}: not a CurveZMQ key (expected {KEY_CHARS} Z85 characters)")
    return text.encode("ascii")


# ----------------------------------------------------------------------------- writing


def _render(node_id: int, pair: KeyPair, secret: bool) -> bytes:
    if secret:
        banner = (
            f"#   p2pfl CurveZMQ secret key of node {node_id}\n"
            "#   Keep this file private: mode 0600, never copied to another node.\n"
        )
    else:
        banner = (
            f"#   p2pfl CurveZMQ public key of node {node_id}\n"
            "#   Public: it is also recorded in the topology file.\n"
        )
    lines = [
        banner,
        "metadata\n",
        f'    node-id = "{node_id}"\n',
        "curve\n",
        f'    public-key = "{pair.public.decode("ascii")}"\n',
    ]
    if secret:
        lines.append(f'    secret-key = "{pair.secret.decode("ascii")}"\n')
    return "".join(lines).encode("ascii")


def _write_new(path: Path, data: bytes, mode: int) -> None:
    """Create ``path`` with ``mode`` from the first instant; fails if it exists."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)


def _replace(path: Path, data: bytes, mode: int) -> None:
    """Write ``data`` to a fresh temporary file beside ``path``, then rename it over ``path``."""
    tmp = path.with_name(f".{path.name}.tmp-{secrets.token_hex(4)}")
    try:
        _write_new(tmp, data, mode)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_key_pair(
    directory: str | os.PathLike[str], node_id: int, pair: KeyPair, *, force: bool = False
) -> tuple[Path, Path]:
    """Write ``pair`` as node ``node_id``'s public and secret files; return their paths.

    Without ``force`` an existing file is an error (:class:`KeyFileError`) and
    nothing is overwritten; with ``force`` each file is replaced atomically.
    """
    check_z85_key(pair.public, f"node {node_id} public key")
    check_z85_key(pair.secret, f"node {node_id} secret key")
    if zmq.curve_public(pair.secret) != pair.public:
        raise KeyFileError(f"node {node_id}: the public key does not belong to the secret key")
    public, secret = public_key_path(directory, node_id), secret_key_path(directory, node_id)
    write = _replace if force else _write_new
    try:
        write(secret, _render(node_id, pair, secret=True), 0o600)
        write(public, _render(node_id, pair, secret=False), 0o644)
    except FileExistsError as exc:
        raise KeyFileError(
            f"{exc.filename}: already exists; pass --force to replace the keys"
        ) from None
    except OSError as exc:
        raise KeyFileError(
            f"{exc.filename or directory}: cannot write key: {exc.strerror}"
        ) from None
    return public, secret


def ignore_secrets(directory: str | os.PathLike[str]) -> Path:
    """Make ``directory/.gitignore`` ignore the secret key files; return its path.

    Creates the file, or appends the pattern to an existing one that lacks it.
    """
    path = Path(directory) / GITIGNORE
    try:
        existing = path.read_text(encoding="utf-8") if path.exists() else None
        if existing is None:
            path.write_text(_GITIGNORE_TEXT, encoding="utf-8")
        elif SECRET_PATTERN not in (line.strip() for line in existing.splitlines()):
            sep = "" if existing.endswith("\n") or not existing else "\n"
            path.write_text(existing + sep + _GITIGNORE_TEXT, encoding="utf-8")
    except OSError as exc:
        raise KeyFileError(f"{path}: cannot update: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise KeyFileError(f"{path}: not a text file; cannot add {SECRET_PATTERN}") from None
    return path


def generate_keys(
    directory: str | os.PathLike[str], node_ids: Iterable[int], *, force: bool = False
) -> dict[int, str]:
    """A fresh key pair (``zmq.curve_keypair()``) per node, written to ``directory``.

    Returns the public keys by node id (Z85 text), for the topology file. Without
    ``force``, if any of the files exists, raises :class:`KeyFileError` listing them
    before writing anything. ``directory`` is created (mode 0700) if missing, and
    its ``.gitignore`` covers the secret files (:func:`ignore_secrets`).
    """
    ids = sorted(set(node_ids))
    for node in ids:
        if type(node) is not int or node < 0:
            raise ValueError(f"node ids must be non-negative ints, got {node!r}")
    root = Path(directory)
    if root.exists() and not root.is_dir():
        raise KeyFileError(f"{root}: exists and is not a directory")
    try:
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise KeyFileError(f"{root}: cannot create key directory: {exc.strerror}") from None
    if not force:
        existing = [
            str(p)
            for node in ids
            for p in (public_key_path(root, node), secret_key_path(root, node))
            if p.exists()
        ]
        if existing:
            shown = ", ".join(existing[:4]) + (" ..." if len(existing) > 4 else "")
            raise KeyFileError(
                f"{len(existing)} key file(s) already exist ({shown}); pass --force to replace them"
            )
    ignore_secrets(root)  # before any secret exists
    public_keys: dict[int, str] = {}
    for node in ids:
        public, secret = zmq.curve_keypair()
        write_key_pair(root, node, KeyPair(public, secret), force=force)
        public_keys[node] = public.decode("ascii")
    return public_keys


# ----------------------------------------------------------------------------- reading


def _read_small(path: Path) -> bytes:
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_KEY_FILE_BYTES + 1)
    except FileNotFoundError:
        raise KeyFileError(f"{path}: key file not found") from None
    except IsADirectoryError:
        raise KeyFileError(f"{path}: is a directory, not a key file") from None
    except OSError as exc:
        raise KeyFileError(f"{path}: cannot read key file: {exc.strerror}") from None
    if len(data) > MAX_KEY_FILE_BYTES:
        raise KeyFileError(f"{path}: too large to be a key file")
    return data


def _parse(path: Path, data: bytes) -> dict[str, bytes]:
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        raise KeyFileError(f"{path}: not a key file (non-ASCII content)") from None
    found: dict[str, bytes] = {}
    for line in text.splitlines():
        match = _LINE.match(line)
        if match is None:
            continue
        name, value = match.groups()
        if name in found:
            raise KeyFileError(f"{path}: {name} appears twice")
        found[name] = check_z85_key(value, f"{path}: {name}")
    if "public-key" not in found:
        raise KeyFileError(f"{path}: no public-key line; not a CurveZMQ certificate")
    return found


def load_public_key(path: str | os.PathLike[str]) -> bytes:
    """The Z85 public key in a certificate file (public or secret)."""
    p = Path(path)
    return _parse(p, _read_small(p))["public-key"]


def load_node_keys(directory: str | os.PathLike[str], node_id: int) -> KeyPair:
    """Node ``node_id``'s key pair from ``directory``, checked.

    Raises :class:`KeyFileError` when the secret file is missing, unreadable,
    malformed, readable by group or others (``chmod 600`` it), or when its public
    key does not belong to its secret key or differs from ``node-<id>.key``.
    """
    secret_path = secret_key_path(directory, node_id)
    data = _read_small(secret_path)  # first: "not found" is the most useful message
    if os.name == "posix":
        mode = stat.S_IMODE(os.stat(secret_path).st_mode)
        if mode & 0o077:
            raise KeyFileError(
                f"{secret_path}: secret key is accessible by group or others (mode {mode:04o}); "
                f"run: chmod 600 {secret_path}"
            )
    found = _parse(secret_path, data)
    if "secret-key" not in found:
        raise KeyFileError(f"{secret_path}: no secret-key line; this is a public certificate")
    public, secret = found["public-key"], found["secret-key"]
    if zmq.curve_public(secret) != public:
        raise KeyFileError(f"{secret_path}: its public key does not belong to its secret key")
    public_path = public_key_path(directory, node_id)
    if public_path.exists() and load_public_key(public_path) != public:
        raise KeyFileError(f"{public_path}: differs from the public key in {secret_path.name}")
    return KeyPair(public, secret)


def check_public_keys(public_keys: Mapping[int, str], what: str = "topology") -> dict[int, bytes]:
    """Public keys by node id as Z85 bytes; every key valid and no two nodes sharing one."""
    out: dict[int, bytes] = {}
    owner: dict[bytes, int] = {}
    for node, key in sorted(public_keys.items()):
        z = check_z85_key(key, f"{what}: public key of node {node}")
        if z in owner:
            raise KeyFileError(f"{what}: nodes {owner[z]} and {node} have the same public key")
        owner[z] = node
        out[node] = z
    return out
