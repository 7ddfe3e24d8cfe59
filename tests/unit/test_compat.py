"""The 3.10 compatibility layer: the names exist and ``uncancel`` follows the task's counting."""

from __future__ import annotations

import asyncio
import sys

import pytest

from p2pfl import _compat


def test_exports_the_standard_names_on_311() -> None:
    if sys.version_info < (3, 11):
        pytest.skip("3.11 and newer re-export the standard library")
    import tomllib

    assert _compat.tomllib is tomllib
    assert _compat.TaskGroup is asyncio.TaskGroup
    assert _compat.timeout is asyncio.timeout


async def test_timeout_raises_the_builtin_timeout_error() -> None:
    with pytest.raises(TimeoutError):
        async with _compat.timeout(0.01):
            await asyncio.sleep(5)


async def test_uncancel_takes_back_one_cancellation() -> None:
    started = asyncio.Event()
    outcome: list[int] = []

    async def victim() -> None:
        started.set()
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            assert task is not None
            outcome.append(_compat.uncancel(task))

    task = asyncio.create_task(victim())
    await started.wait()
    task.cancel()
    await task
    assert outcome == [0]


def test_uncancel_without_counting_reports_nothing_pending() -> None:
    class PlainTask:  # a 3.10 task: no uncancel
        pass

    assert _compat.uncancel(PlainTask()) == 0  # type: ignore[arg-type]
