"""A node started by a launcher ends with it, however the launcher ends.

``p2pfl launch`` starts every node with ``--parent-pid <launcher pid>``; the node
then calls :func:`follow_parent` before anything else. On Linux that asks the
kernel for a signal when the parent dies (``prctl(PR_SET_PDEATHSIG, SIGTERM)``),
which covers a SIGKILL of the launcher too: the node stops as on a plain SIGTERM
(bye to its neighbours, log flushed, exit 143). Elsewhere, or if ``prctl``
fails, a daemon thread polls ``getppid()`` every :data:`POLL_S` seconds instead.

The race: the launcher may die between starting the node and that call. An
orphan is re-parented (to init or a subreaper), so checking ``getppid()`` *after*
arming the signal tells the two cases apart: still our parent, and any later
death signals us; not our parent, and it is already gone (``False``).
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time
from typing import Literal

from p2pfl.errors import ConfigError

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
POLL_S = 0.5

Method = Literal["prctl", "poll"]


def _arm_prctl(signum: int) -> bool:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(PR_SET_PDEATHSIG, signum, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def _poll(parent_pid: int, signum: int) -> None:
    while os.getppid() == parent_pid:
        time.sleep(POLL_S)
    os.kill(os.getpid(), signum)


def follow_parent(
    parent_pid: int, signum: int = signal.SIGTERM, *, method: Method | None = None
) -> bool:
    """Have ``signum`` delivered to this process when ``parent_pid``, its parent, exits.

    ``method``: ``"prctl"`` (default on Linux) or ``"poll"`` (the fallback). Returns
    ``False`` when ``parent_pid`` is not (any more) this process's parent: the
    launcher is gone and the caller should stop at once.
    """
    if parent_pid < 1:
        raise ConfigError(f"--parent-pid {parent_pid}: must be a process id (>= 1)")
    chosen = method or ("prctl" if sys.platform.startswith("linux") else "poll")
    if chosen == "poll" or not _arm_prctl(signum):
        threading.Thread(
            target=_poll, args=(parent_pid, signum), name="parent-watch", daemon=True
        ).start()
    return os.getppid() == parent_pid
