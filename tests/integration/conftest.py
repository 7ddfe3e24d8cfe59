"""Fixtures shared by the integration tests (real processes, real sockets)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from _procs import no_leftover_processes


@pytest.fixture
def run_dir(tmp_path: Path) -> Iterator[Path]:
    """A directory for the run; afterwards no process started for it may still be alive.

    Every process a test starts names this private directory on its command line, so
    the check finds exactly this test's processes (and kills any it finds).
    """
    yield tmp_path
    leaked = no_leftover_processes(tmp_path)
    assert leaked == [], f"processes left running: {leaked}"
