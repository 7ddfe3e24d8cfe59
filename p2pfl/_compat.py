"""The Python 3.11 standard-library pieces p2pfl uses, from their backports on 3.10.

On 3.11 and newer every name is the standard library's own. On 3.10 they come
from well-kept backports, declared as conditional dependencies in
``pyproject.toml``: ``tomli`` (``tomllib``), ``taskgroup`` (``asyncio.TaskGroup``,
``asyncio.timeout`` and ``timeout_at`` from CPython, raising the builtin
``TimeoutError`` as 3.11 does), ``exceptiongroup`` and ``typing_extensions``.

``Task.uncancel`` (3.11) has no stdlib counterpart on 3.10, where a caught
cancellation is simply consumed: :func:`uncancel` then reports no pending
cancellation.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

if sys.version_info >= (3, 11):
    from asyncio import TaskGroup, timeout, timeout_at
    from builtins import BaseExceptionGroup
    from typing import Self

    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib
    from exceptiongroup import BaseExceptionGroup
    from taskgroup import TaskGroup, timeout, timeout_at
    from typing_extensions import Self

__all__ = [
    "BaseExceptionGroup",
    "Self",
    "TaskGroup",
    "timeout",
    "timeout_at",
    "tomllib",
    "uncancel",
]


def uncancel(task: asyncio.Task[Any]) -> int:
    """``task.uncancel()`` where tasks count cancellations (3.11+), else 0."""
    method = getattr(task, "uncancel", None)
    return int(method()) if method is not None else 0
