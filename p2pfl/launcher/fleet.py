"""Node processes started, watched and, whatever happens, stopped.

:class:`NodeFleet` starts one OS process per node, each in its own process group
(``start_new_session``), so that stopping a node also stops anything it started,
and so that a Ctrl-C in the launcher's terminal reaches the launcher only, which
then stops its nodes in order: SIGTERM to every group (nodes say bye and flush
their logs), SIGKILL to whatever is left after a grace period. Leaving the
``async with`` block always does this, so no node process outlives its fleet.

Each node's stdout is read line by line as JSON events (``p2pfl node --events``)
and handed to ``on_event``; its stderr goes to a file, whose last lines explain
an abnormal exit (:class:`NodeExit`). Stdout is drained to the end whatever the
handler does (a node blocked on a full pipe would stall its neighbours); a
handler's exception is raised again by :meth:`NodeFleet.wait`.

:meth:`NodeFleet.wait` can stop the whole fleet as soon as one exit says so
(``abort_if``: ``p2pfl launch`` stops on a node's configuration error). That
the nodes also end when the launcher is killed outright is the nodes' part:
each is started with ``--parent-pid`` (:mod:`p2pfl.lifeline`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from p2pfl._compat import Self, timeout

STDERR_TAIL_LINES = 6

#: ``on_event(node, event)``: an event line a node printed (see :mod:`p2pfl.node.metrics`).
EventHandler = Callable[[int, dict[str, Any]], None]


@dataclass(frozen=True)
class NodeExit:
    """How a node process ended: its exit status and the last lines of its stderr."""

    node: int
    returncode: int
    stderr_tail: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    @property
    def reason(self) -> str:
        rc = self.returncode
        if rc == 0:
            return "completed"
        if rc < 0:
            return f"killed by {_signal_name(-rc)}"
        if rc > 128 and _signal_name(rc - 128).startswith("SIG"):
            return f"stopped by {_signal_name(rc - 128)} (exit code {rc})"
        return f"exited with code {rc}"

    def describe(self) -> str:
        text = f"node {self.node} {self.reason}"
        if not self.ok and self.stderr_tail:
            text += ": " + " | ".join(self.stderr_tail)
        return text


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _tail(path: Path, lines: int) -> tuple[str, ...]:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ()
    return tuple(line for line in text.splitlines() if line.strip())[-lines:]


class NodeFleet:
    """Start node processes, watch them, stop them; ``async with`` guarantees the stop.

    ``commands`` maps node id to its argv; stderr goes to ``log_dir/node-<id>.stderr``.
    """

    def __init__(
        self,
        commands: Mapping[int, Sequence[str]],
        log_dir: str | Path,
        *,
        on_event: EventHandler | None = None,
        env: Mapping[str, str] | None = None,
        stop_grace_s: float = 5.0,
    ) -> None:
        self.commands = {k: list(v) for k, v in sorted(commands.items())}
        self.log_dir = Path(log_dir)
        self.on_event = on_event
        self.stop_grace_s = stop_grace_s
        base = dict(os.environ if env is None else env)
        # one compute thread per process: many nodes share few cores
        base.setdefault("OMP_NUM_THREADS", "1")
        base.setdefault("MKL_NUM_THREADS", "1")
        self._env = base
        self._procs: dict[int, asyncio.subprocess.Process] = {}
        self._readers: list[asyncio.Task[None]] = []
        self._handler_error: BaseException | None = None
        #: The exit that made :meth:`wait` stop the fleet (``abort_if``), if one did.
        self.aborted_by: NodeExit | None = None

    def stderr_path(self, node: int) -> Path:
        return self.log_dir / f"node-{node}.stderr"

    @property
    def pids(self) -> dict[int, int]:
        return {k: p.pid for k, p in self._procs.items()}

    async def __aenter__(self) -> Self:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        try:
            for node, cmd in self.commands.items():
                with self.stderr_path(node).open("wb") as err:
                    proc = await asyncio.create_subprocess_exec(
                        *cmd,
                        stdin=asyncio.subprocess.DEVNULL,
                        stdout=asyncio.subprocess.PIPE,
                        stderr=err,
                        start_new_session=True,
                        env=self._env,
                    )
                self._procs[node] = proc
                self._readers.append(asyncio.create_task(self._read_events(node, proc)))
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def _read_events(self, node: int, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        async for raw in proc.stdout:
            if self.on_event is None or self._handler_error is not None:
                continue
            try:
                event = json.loads(raw)
            except ValueError:
                continue  # not an event line: ignore, the log file has the record
            if isinstance(event, dict):
                try:
                    self.on_event(node, event)
                except Exception as exc:  # keep draining; wait() raises it
                    self._handler_error = exc

    def signal(self, node: int, signum: int) -> None:
        """Send ``signum`` to node ``node``'s process group (if it still runs)."""
        proc = self._procs[node]
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signum)

    def _exit(self, node: int, code: int) -> NodeExit:
        return NodeExit(
            node, code, _tail(self.stderr_path(node), STDERR_TAIL_LINES) if code else ()
        )

    async def wait(self, abort_if: Callable[[NodeExit], bool] | None = None) -> list[NodeExit]:
        """Wait for every node to exit; their exits, by node id.

        ``abort_if(exit)`` is asked as each node exits; the first time it says yes,
        every other node is stopped at once (:meth:`stop`) and that exit is kept in
        :attr:`aborted_by`.
        """

        async def watch(node: int, proc: asyncio.subprocess.Process) -> int:
            code = await proc.wait()
            exit_ = self._exit(node, code)
            if abort_if is not None and self.aborted_by is None and abort_if(exit_):
                self.aborted_by = exit_
                await self.stop()
            return code

        codes = await asyncio.gather(*(watch(k, p) for k, p in self._procs.items()))
        for reader in self._readers:
            with contextlib.suppress(asyncio.CancelledError):
                await reader  # stdout is at EOF once the process is gone
        if self._handler_error is not None:
            raise self._handler_error
        return [self._exit(node, code) for node, code in zip(self._procs, codes, strict=True)]

    async def stop(self) -> None:
        """SIGTERM every running node's group, SIGKILL what is left after the grace period."""
        running = [k for k, p in self._procs.items() if p.returncode is None]
        for node in running:
            self.signal(node, signal.SIGTERM)
        if running:
            waits = [self._procs[k].wait() for k in running]
            with contextlib.suppress(TimeoutError):
                async with timeout(self.stop_grace_s):
                    await asyncio.gather(*waits)
        for node in self._procs:
            # Only while not reaped: a reaped process's id may belong to someone else.
            self.signal(node, signal.SIGKILL)
        await asyncio.gather(*(p.wait() for p in self._procs.values()))
        for reader in self._readers:
            reader.cancel()
        await asyncio.gather(*self._readers, return_exceptions=True)
        self._readers = []
