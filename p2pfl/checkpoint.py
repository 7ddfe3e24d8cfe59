"""A node's state on disk, written atomically, read back with every byte checked.

:func:`save_checkpoint` writes ``<dir>/node-<id>.round-<r>.ckpt`` (``r`` zero-padded
to 10 digits) and keeps the newest two, so a crash while writing never costs the
previous checkpoint: the new one is written to a temporary file in the same
directory, flushed with ``fsync``, then renamed over its final name (``os.replace``
is atomic on POSIX and Windows), and the directory is synced. A crash leaves at
most a stray ``.node-<id>.*.tmp-*`` file, which :func:`load_checkpoint` ignores and
the next save removes.

File format (no pickle; little-endian)::

    offset    size  field
    0         8     magic b"P2PFLCK1"
    8         4     H: header length (uint32)
    12        H     header: a msgpack map (below)
    12+H      4     crc32 of the header bytes (uint32)
    16+H      p     zero padding so the payload starts at a multiple of 8
    16+H+p    P     payload: params as float32, then momentum as float32 (if any)

Header keys: ``format`` (1), ``node_id``, ``round``, ``param_count``,
``fingerprint`` (str, ``""`` if not given), ``has_momentum`` (bool), ``extra``
(plain data: the optimizer's scalars, RNG seeds, counters...), ``payload_bytes``
(``P``) and ``payload_crc32``. The file must be exactly ``16 + H + p + P`` bytes.

Errors: :class:`CheckpointError` for a file that is truncated, has trailing bytes,
a bad magic, header or checksum; :class:`CheckpointMismatch` for a valid
checkpoint of another node or another model (parameter count or fingerprint).
"""

from __future__ import annotations

import os
import re
import secrets
import struct
import sys
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack
import torch

from p2pfl.errors import DataError

__all__ = [
    "Checkpoint",
    "CheckpointError",
    "CheckpointMismatch",
    "checkpoint_paths",
    "load_checkpoint",
    "save_checkpoint",
]

MAGIC = b"P2PFLCK1"
FORMAT = 1
KEEP = 2
MAX_HEADER_BYTES = 16 * 2**20
_LITTLE = sys.byteorder == "little"
_PREFIX = struct.Struct("<8sI")
_CRC = struct.Struct("<I")
_NAME = re.compile(r"^node-(\d+)\.round-(\d{10,})\.ckpt$")
_HEADER_KEYS = frozenset(
    {
        "format",
        "node_id",
        "round",
        "param_count",
        "fingerprint",
        "has_momentum",
        "extra",
        "payload_bytes",
        "payload_crc32",
    }
)


class CheckpointError(DataError):
    """A checkpoint file is corrupt, truncated, or not a checkpoint."""


class CheckpointMismatch(CheckpointError):
    """A valid checkpoint that belongs to another node or another model."""


@dataclass(frozen=True, eq=False)
class Checkpoint:
    """What :func:`load_checkpoint` returns; ``params``/``momentum`` are float32 ``(d,)``."""

    node_id: int
    round: int
    params: torch.Tensor
    momentum: torch.Tensor | None
    extra: dict[str, Any] = field(default_factory=dict)
    fingerprint: str = ""
    path: Path | None = None


def _name(node_id: int, round: int) -> str:
    return f"node-{node_id}.round-{round:010d}.ckpt"


def checkpoint_paths(directory: str | os.PathLike[str], node_id: int) -> list[Path]:
    """Node ``node_id``'s checkpoint files in ``directory``, newest round first (temp files excluded)."""
    root = Path(directory)
    if not root.is_dir():
        return []
    found: list[tuple[int, Path]] = []
    for p in root.iterdir():
        m = _NAME.match(p.name)
        if m is not None and int(m.group(1)) == node_id and p.is_file():
            found.append((int(m.group(2)), p))
    return [p for _, p in sorted(found, key=lambda rp: rp[0], reverse=True)]


# ----------------------------------------------------------------------------- save


def _check_vector(t: object, name: str, length: int | None) -> torch.Tensor:
    if not isinstance(t, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dtype != torch.float32 or t.ndim != 1:
        raise ValueError(f"{name} must be a float32 vector (d,), got {t.dtype} {tuple(t.shape)}")
    if length is not None and t.numel() != length:
        raise ValueError(f"{name} has {t.numel()} values; params have {length}")
    return t.detach().cpu().contiguous()


def _le_bytes(t: torch.Tensor) -> memoryview:
    array = t.numpy()
    if not _LITTLE:  # pragma: no cover - no big-endian machine in CI
        array = array.byteswap()
    return memoryview(array).cast("B")  # type: ignore[arg-type]


def _write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _fsync_dir(root: Path) -> None:
    if os.name != "posix":  # pragma: no cover - directories cannot be opened on Windows
        return
    fd = os.open(root, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_checkpoint(
    directory: str | os.PathLike[str],
    node_id: int,
    round: int,
    params: torch.Tensor,
    momentum: torch.Tensor | None = None,
    extra: Mapping[str, Any] | None = None,
    *,
    fingerprint: str = "",
    keep: int = KEEP,
) -> Path:
    """Write node ``node_id``'s state after ``round`` atomically; return the file's path.

    ``extra`` is plain data (msgpack types: None, bool, int, float, str, bytes,
    lists and str-keyed maps of those). Keeps the ``keep`` newest checkpoints of
    this node (by round, the new one always included) and deletes older ones.
    """
    if type(node_id) is not int or node_id < 0:
        raise ValueError(f"node_id must be a non-negative int, got {node_id!r}")
    if type(round) is not int or round < 0:
        raise ValueError(f"round must be a non-negative int, got {round!r}")
    if type(keep) is not int or keep < 1:
        raise ValueError(f"keep must be a positive int, got {keep!r}")
    if not isinstance(fingerprint, str):
        raise ValueError(f"fingerprint must be a str, got {type(fingerprint).__name__}")
    p = _check_vector(params, "params", None)
    m = None if momentum is None else _check_vector(momentum, "momentum", p.numel())
    payload = [_le_bytes(p)] + ([] if m is None else [_le_bytes(m)])
    crc = 0
    for part in payload:
        crc = zlib.crc32(part, crc)
    header_fields = {
        "format": FORMAT,
        "node_id": node_id,
        "round": round,
        "param_count": p.numel(),
        "fingerprint": fingerprint,
        "has_momentum": m is not None,
        "extra": dict(extra or {}),
        "payload_bytes": sum(part.nbytes for part in payload),
        "payload_crc32": crc,
    }
    try:
        header = msgpack.packb(header_fields, use_bin_type=True, strict_types=False)
    except (TypeError, ValueError, OverflowError) as exc:
        raise ValueError(f"extra must be plain data (msgpack types): {exc}") from None
    if len(header) > MAX_HEADER_BYTES:
        raise ValueError(
            f"extra is too large ({len(header)} bytes of header; at most {MAX_HEADER_BYTES})"
        )
    pad = b"\0" * (-(_PREFIX.size + len(header) + _CRC.size) % 8)

    root = Path(directory)
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    for stale in root.glob(f".node-{node_id}.round-*.tmp-*"):  # left by a crash mid-write
        stale.unlink(missing_ok=True)
    final = root / _name(node_id, round)
    tmp = root / f".{final.name}.tmp-{secrets.token_hex(4)}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        try:
            _write_all(fd, _PREFIX.pack(MAGIC, len(header)))
            _write_all(fd, header)
            _write_all(fd, _CRC.pack(zlib.crc32(header)) + pad)
            for part in payload:
                _write_all(fd, part)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(root)
    for old in [q for q in checkpoint_paths(root, node_id) if q != final][keep - 1 :]:
        old.unlink(missing_ok=True)
    return final


# ----------------------------------------------------------------------------- load


def _read(path: Path) -> Checkpoint:
    """Parse and verify one checkpoint file; :class:`CheckpointError` naming what is wrong."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            prefix = f.read(_PREFIX.size)
            if len(prefix) < _PREFIX.size:
                raise CheckpointError(f"{path}: truncated ({size} bytes): not even a file header")
            magic, hlen = _PREFIX.unpack(prefix)
            if magic != MAGIC:
                raise CheckpointError(f"{path}: not a p2pfl checkpoint (bad magic {magic!r})")
            if hlen > MAX_HEADER_BYTES or _PREFIX.size + hlen + _CRC.size > size:
                raise CheckpointError(f"{path}: truncated or corrupt (header of {hlen} bytes)")
            header_bytes = f.read(hlen)
            (header_crc,) = _CRC.unpack(f.read(_CRC.size))
            if zlib.crc32(header_bytes) != header_crc:
                raise CheckpointError(f"{path}: corrupt header (crc32 mismatch)")
            header = _parse_header(path, header_bytes)
            pad = -(_PREFIX.size + hlen + _CRC.size) % 8
            start = _PREFIX.size + hlen + _CRC.size + pad
            expected = start + header["payload_bytes"]
            if size != expected:
                what = "truncated" if size < expected else "has trailing bytes"
                raise CheckpointError(f"{path}: {what} ({size} bytes, expected {expected})")
            f.seek(start)
            payload = bytearray(header["payload_bytes"])
            if f.readinto(payload) != len(payload):
                raise CheckpointError(f"{path}: truncated while reading")
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read checkpoint: {exc.strerror}") from None
    if zlib.crc32(payload) != header["payload_crc32"]:
        raise CheckpointError(f"{path}: corrupt payload (crc32 mismatch)")
    d = header["param_count"]
    values = torch.frombuffer(payload, dtype=torch.float32) if payload else torch.zeros(0)
    if not _LITTLE:  # pragma: no cover - no big-endian machine in CI
        values = torch.from_numpy(values.numpy().byteswap())
    return Checkpoint(
        node_id=header["node_id"],
        round=header["round"],
        params=values[:d],
        momentum=values[d:] if header["has_momentum"] else None,
        extra=header["extra"],
        fingerprint=header["fingerprint"],
        path=path,
    )


def _parse_header(path: Path, data: bytes) -> dict[str, Any]:
    try:
        header = msgpack.unpackb(data, raw=False, strict_map_key=True, max_ext_len=0)
    except Exception as exc:  # msgpack raises several ValueError/TypeError kinds
        raise CheckpointError(f"{path}: header is not valid msgpack: {exc}") from None
    if not isinstance(header, dict) or set(header) != _HEADER_KEYS:
        raise CheckpointError(f"{path}: header does not have the checkpoint keys")
    if header["format"] != FORMAT:
        raise CheckpointError(
            f"{path}: checkpoint format {header['format']!r}; this p2pfl reads {FORMAT}"
        )
    for key in ("node_id", "round", "param_count", "payload_bytes", "payload_crc32"):
        if type(header[key]) is not int or header[key] < 0:
            raise CheckpointError(f"{path}: header field {key!r} is not a non-negative int")
    if type(header["has_momentum"]) is not bool or type(header["fingerprint"]) is not str:
        raise CheckpointError(f"{path}: header fields have the wrong types")
    if not isinstance(header["extra"], dict):
        raise CheckpointError(f"{path}: header field 'extra' is not a map")
    vectors = 2 if header["has_momentum"] else 1
    if header["payload_bytes"] != 4 * header["param_count"] * vectors:
        raise CheckpointError(f"{path}: payload size does not match the parameter count")
    return header


def load_checkpoint(
    directory: str | os.PathLike[str],
    node_id: int,
    *,
    param_count: int | None = None,
    fingerprint: str | None = None,
) -> Checkpoint | None:
    """Node ``node_id``'s newest checkpoint in ``directory``, or ``None`` if there is none.

    Raises :class:`CheckpointError` if the newest file is corrupt or truncated (the
    message says whether the previous one is intact), and :class:`CheckpointMismatch`
    if it belongs to another node or, when given, another ``param_count`` or
    ``fingerprint`` (an empty recorded fingerprint is not compared).
    """
    paths = checkpoint_paths(directory, node_id)
    if not paths:
        return None
    try:
        ckpt = _read(paths[0])
    except CheckpointError as exc:
        hint = ""
        if len(paths) > 1:
            try:
                _read(paths[1])
                hint = f"; the previous checkpoint {paths[1].name} is intact: delete {paths[0].name} to resume from it"
            except CheckpointError:
                hint = f"; the previous checkpoint {paths[1].name} is damaged too"
        raise CheckpointError(f"{exc}{hint}") from None
    where = paths[0]
    if ckpt.node_id != node_id:
        raise CheckpointMismatch(f"{where}: checkpoint of node {ckpt.node_id}, not node {node_id}")
    if param_count is not None and ckpt.params.numel() != param_count:
        raise CheckpointMismatch(
            f"{where}: checkpoint holds a model of {ckpt.params.numel()} values; this node's "
            f"model has {param_count} (a different model: use another checkpoint directory)"
        )
    if fingerprint is not None and ckpt.fingerprint and ckpt.fingerprint != fingerprint:
        raise CheckpointMismatch(
            f"{where}: checkpoint of a model with fingerprint {ckpt.fingerprint!r}; this node's "
            f"model is {fingerprint!r} (a different architecture)"
        )
    return ckpt
