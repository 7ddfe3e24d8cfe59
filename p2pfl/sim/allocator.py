"""Keep freed memory in the process for reuse: the simulator's rounds allocate alike.

Every simulated round allocates and frees the same large tensors (gradients,
activations, the message table: megabytes each for a few hundred nodes).
glibc's ``malloc`` serves blocks above its mmap threshold with fresh ``mmap``
calls and hands freed heap tops back to the kernel, so each round touches fresh
pages and pays a page fault per 4 KiB: up to a third of a round's time at
N = 256. Raising the mmap threshold to glibc's maximum (32 MiB on 64-bit) and
the trim threshold keeps those blocks in the heap, where the next round reuses
them. The resident size then stays near the peak of one round instead of
shrinking between rounds.

Effect is process-wide and glibc-only; elsewhere :func:`retain_freed_memory`
does nothing and returns ``False``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import sys

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
#: glibc accepts at most HEAP_MAX_SIZE / 2 (32 MiB on 64-bit) for the mmap threshold.
MMAP_THRESHOLD = 32 << 20
#: Freed memory at the top of the heap kept before trimming.
TRIM_THRESHOLD = 1 << 30


@functools.cache
def retain_freed_memory() -> bool:
    """Tune glibc ``malloc`` (once per process) so freed blocks are reused; ``True`` if applied."""
    if not sys.platform.startswith("linux"):
        return False
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and other libcs have no mallopt
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )
