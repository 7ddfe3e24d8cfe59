"""The simulator keeps freed memory for reuse, so its rounds stop paying page faults."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

from p2pfl.sim.allocator import retain_freed_memory

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(
        sys.platform != "linux" or platform.libc_ver()[0] != "glibc", reason="glibc malloc only"
    ),
]

# Two "rounds" of four touched 24 MiB tensors, then the page faults of a third.
PROBE = """
import resource, sys, torch
from p2pfl.sim.allocator import retain_freed_memory
if sys.argv[1] == "retain":
    assert retain_freed_memory()
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
def round_():
    blocks = [torch.ones(6 << 20) for _ in range(4)]
    del blocks
round_(); round_()
start = faults(); round_(); print(faults() - start)
"""


def _faults(mode: str) -> int:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, mode], capture_output=True, text=True, timeout=100, check=True
    )
    return int(out.stdout.strip())


def test_retained_memory_is_reused_without_page_faults() -> None:
    pages = 4 * (24 << 20) // 4096
    assert _faults("default") > pages // 2  # glibc hands the blocks back and faults them in again
    assert _faults("retain") < pages // 20


def test_applies_once_per_process() -> None:
    assert retain_freed_memory() is True
    assert retain_freed_memory() is True
