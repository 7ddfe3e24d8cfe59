"""A process that follows its parent gets SIGTERM when the parent dies, even by SIGKILL,
with the kernel's parent-death signal and with the polling fallback; and it learns at
once when its parent was gone before it asked (the start-up race)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from _procs import wait_exit

from p2pfl.errors import ConfigError
from p2pfl.lifeline import follow_parent

pytestmark = pytest.mark.timeout(120)

# The grandchild: follow its parent, say so, then wait for a signal (default actions).
FOLLOWER = """
import os, signal, sys
from p2pfl.lifeline import follow_parent
print(os.getpid(), follow_parent(os.getppid(), method=sys.argv[1]), flush=True)
signal.pause()
"""
# The parent: start the follower with our stdout, then block until killed.
PARENT = """
import subprocess, sys
subprocess.Popen([sys.executable, "-c", sys.argv[1], sys.argv[2]])
sys.stdin.read()
"""


@pytest.mark.skipif(not hasattr(os, "pidfd_open"), reason="needs pidfd_open (Linux)")
@pytest.mark.parametrize("method", ["prctl", "poll"])
def test_follower_gets_sigterm_when_its_parent_is_killed(method: str) -> None:
    if method == "prctl" and not sys.platform.startswith("linux"):
        pytest.skip("PR_SET_PDEATHSIG is Linux-only")
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, FOLLOWER, method],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    follower = 0
    try:
        assert parent.stdout is not None
        pid_text, armed = parent.stdout.readline().split()  # blocks until it followed
        follower = int(pid_text)
        assert armed == "True"
        assert not wait_exit(follower, 0)  # alive while its parent lives
        parent.kill()
        parent.wait(timeout=30)
        assert wait_exit(follower, 60), f"the follower ({method}) outlived its parent"
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        if follower and not wait_exit(follower, 0):
            os.kill(follower, signal.SIGKILL)


def test_a_parent_pid_must_be_a_process_id() -> None:
    with pytest.raises(ConfigError, match="--parent-pid 0"):
        follow_parent(0)  # refused before arming anything in this process


def test_node_whose_launcher_is_gone_does_not_start(tmp_path: Path) -> None:
    # as if the launcher had died between starting the node and its follow_parent call
    gone = subprocess.Popen(["true"])
    gone.wait()
    node = subprocess.run(
        [sys.executable, "-m", "p2pfl", "node", "--id", "0", "--parent-pid", str(gone.pid)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert node.returncode == 128 + signal.SIGTERM
    assert f"process {gone.pid}, which started it, is gone; not starting" in node.stderr
