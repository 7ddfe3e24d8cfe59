"""Sweep cells as Ray tasks: ``p2pfl sweep ... --executor ray [--address ADDR]``.

Each pending cell is one Ray task (``num_cpus=1``, one torch thread, as a local
worker process) that runs :func:`~p2pfl.sweep.runner.execute_cell` on the cell's
plain-data payload and returns its plain-data record; the driver stores each record
as it arrives (``DIR/cells/<id>.json``), so resume, ``results.csv`` and the heatmaps
are those of the local executor, with the same numbers.

Without ``--address`` a local Ray instance with ``--jobs`` CPUs is started and
stopped after the sweep; with one (``ray://host:10001``, ``host:6379`` or ``auto``)
the tasks go to that existing cluster, whose workers must have p2pfl installed (the
same version). Ray is an optional extra: ``pip install -e ".[ray]"``. Ray moves the
payloads between driver and workers with its own serialization (pickle); like the
local process pool, only dicts of numbers and strings cross, inside one trusted
cluster.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Any

from p2pfl.errors import ConfigError

if TYPE_CHECKING:
    from p2pfl.sweep.runner import Execute, PlannedCell

INSTALL_HINT = (
    '--executor ray needs Ray, an optional extra: pip install -e ".[ray]" '
    "(or pip install 'ray>=2.9'); --executor local (the default) needs nothing"
)


def import_ray() -> ModuleType:
    """The ``ray`` module, or a ConfigError that says how to install it."""
    try:
        import ray
    except ImportError:
        raise ConfigError(INSTALL_HINT) from None
    return ray


def _run_cell(execute: Execute, payload: dict[str, Any]) -> dict[str, Any]:
    import torch

    torch.set_num_threads(1)  # the arithmetic of a local worker process
    return execute(payload)


def run_on_ray(
    pending: Sequence[PlannedCell],
    execute: Execute,
    done: Callable[..., None],
    jobs: int,
    address: str | None = None,
) -> None:
    """Run ``pending`` as Ray tasks; ``done(cell, record)`` as each one finishes."""
    from p2pfl.sweep.runner import failed_record

    ray = import_ray()
    started = not ray.is_initialized()
    if started:
        if address is None:
            ray.init(num_cpus=jobs, include_dashboard=False, log_to_driver=False)
        else:
            ray.init(address=address, log_to_driver=False)
    try:
        task = ray.remote(num_cpus=1, max_retries=0)(_run_cell)
        refs = {task.remote(execute, p.payload()): p for p in pending}
        while refs:
            ready, _ = ray.wait(list(refs), num_returns=1)
            for ref in ready:
                p = refs.pop(ref)
                try:
                    record = ray.get(ref)
                except ray.exceptions.RayError as exc:
                    # Not the cell's fault (a worker or node died): store nothing, so that
                    # the next run retries the cell.
                    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                    reason = f"Ray task failed: {type(exc).__name__}: {first}"
                    done(p, failed_record(reason, time.perf_counter()), persist=False)
                    continue
                done(p, record)
    finally:
        if started:
            ray.shutdown()
