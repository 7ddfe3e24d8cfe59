"""The IDX array format of the MNIST files (LeCun et al.), parsed with numpy.

Layout, all integers big-endian::

    bytes 0-1   zero
    byte  2     element type: 0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32,
                0x0D float32, 0x0E float64
    byte  3     number of dimensions k
    next 4k     the k dimension sizes, uint32 each
    then        the elements, row-major, big-endian

A file whose name ends in ``.gz`` is decompressed first. Any defect (bad magic,
unknown type, truncated or over-long data) is a :class:`~p2pfl.errors.DataError`
naming the file.
"""

from __future__ import annotations

import gzip
import math
import zlib
from pathlib import Path

import numpy as np

from p2pfl.errors import DataError

IDX_TYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def _read_bytes(path: Path) -> bytes:
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as fh:
                return fh.read()
        return path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"IDX file not found: {path}") from None
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path}: unreadable ({exc})") from None


def parse_idx(data: bytes, where: str = "IDX data") -> np.ndarray:
    """The array stored in IDX-format ``data`` (native byte order)."""
    if len(data) < 4:
        raise DataError(f"{where}: truncated: {len(data)} bytes, not even a header")
    if data[0] != 0 or data[1] != 0 or data[2] not in IDX_TYPES:
        raise DataError(
            f"{where}: bad magic number 0x{data[:4].hex()}; "
            "expected 0x0000TTKK with type TT in 08,09,0B,0C,0D,0E"
        )
    dtype = IDX_TYPES[data[2]]
    ndim = data[3]
    if ndim == 0:
        raise DataError(f"{where}: bad magic number 0x{data[:4].hex()}: zero dimensions")
    start = 4 + 4 * ndim
    if len(data) < start:
        raise DataError(f"{where}: truncated header ({len(data)} bytes for {ndim} dimensions)")
    shape = tuple(int(s) for s in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    expected = math.prod(shape) * dtype.itemsize
    got = len(data) - start
    if got < expected:
        raise DataError(f"{where}: truncated: shape {shape} needs {expected} bytes, found {got}")
    if got > expected:
        raise DataError(f"{where}: {got - expected} unexpected trailing bytes after shape {shape}")
    arr = np.frombuffer(data, dtype=dtype, offset=start).reshape(shape)
    return arr.astype(dtype.newbyteorder("="))


def read_idx(path: str | Path) -> np.ndarray:
    """The array in the IDX file at ``path`` (gzip-compressed when it ends in ``.gz``)."""
    file = Path(path)
    return parse_idx(_read_bytes(file), str(file))


def write_idx(path: str | Path, array: np.ndarray) -> None:
    """Write ``array`` as an IDX file (gzip-compressed when ``path`` ends in ``.gz``)."""
    arr = np.asarray(array)
    codes = {dt.str.lstrip("<>|="): code for code, dt in IDX_TYPES.items()}
    key = arr.dtype.newbyteorder(">").str.lstrip("<>|=")
    if key not in codes or arr.ndim == 0 or arr.ndim > 255:
        raise DataError(f"cannot write a {arr.dtype} array of shape {arr.shape} as IDX")
    code = codes[key]
    header = bytes([0, 0, code, arr.ndim]) + np.asarray(arr.shape, dtype=">u4").tobytes()
    body = arr.astype(IDX_TYPES[code]).tobytes()
    file = Path(path)
    if file.suffix == ".gz":
        with gzip.open(file, "wb") as fh:
            fh.write(header + body)
    else:
        file.write_bytes(header + body)
