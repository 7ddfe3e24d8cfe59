"""Run the cells of a sweep, in parallel, resumably.

:func:`plan_sweep` loads and checks every cell's scenario before anything runs
(unknown keys, wrong types, unknown registry names or parameters are a
:class:`~p2pfl.errors.ConfigError`). :func:`run_sweep` then runs the cells that
have no result yet, each in a worker process (spawn context, one torch thread
each, so ``J`` workers use ``J`` cores), and writes each finished cell to
``DIR/cells/<id>.json`` atomically as soon as it ends.

A cell's id is a hash of its fully resolved scenario, seed included, so a re-run
with the same (or an extended) grid finds the cells already done and skips them,
and a changed scenario file or ``--set`` value gives new ids. A cell whose
experiment cannot be built or run (say ``f`` does not fit a node's neighbourhood)
is recorded with status ``failed`` and its message; it does not stop the sweep.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import json
import multiprocessing
import time
import traceback
from collections.abc import Callable, Sequence
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from p2pfl.config import Scenario, load_scenario, scenario_from_dict
from p2pfl.errors import ConfigError, P2PFLError
from p2pfl.sweep.grid import Cell, GridAxis, display, expand

CELLS_DIR = "cells"
#: Where cells run: this machine's processes, or Ray tasks (the optional extra ``ray``).
EXECUTORS = ("local", "ray")
OK = "ok"
FAILED = "failed"

Record = dict[str, Any]
Execute = Callable[[dict[str, Any]], Record]


@dataclass(frozen=True)
class PlannedCell:
    """A cell with its checked scenario and stable id."""

    cell: Cell
    scenario: Scenario
    id: str

    def payload(self) -> dict[str, Any]:
        """What a worker needs to run the cell: plain data only."""
        return {
            "id": self.id,
            "scenario": self.scenario.to_dict(),
            "base_dir": self.scenario.base_dir,
        }


@dataclass(frozen=True)
class SweepRun:
    """The outcome of :func:`run_sweep`: one record per planned cell, in plan order."""

    records: list[Record]
    skipped: int
    ran: int
    failed: int


def cell_id(scenario: Scenario) -> str:
    """A stable 16-hex-digit hash of the fully resolved scenario (seed included)."""
    text = json.dumps(scenario.identity(), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def check_names(scenario: Scenario) -> None:
    """Check every registry-backed name and parameter table without building anything."""
    from p2pfl.aggregators import make_aggregator
    from p2pfl.attacks import make_attack
    from p2pfl.compression import make_compressor
    from p2pfl.data import DATASETS, PARTITIONERS
    from p2pfl.models import MODELS
    from p2pfl.topology import PLACEMENTS, TOPOLOGIES

    s = scenario
    DATASETS.bind(s.data.source, s.data.params, "data.params")
    PARTITIONERS.bind(s.data.partition, s.data.partition_params, "data.partition_params")
    if ":" not in s.model.name:
        MODELS.bind(s.model.name, s.model.params, "model.params")
    if not s.topology.file:
        TOPOLOGIES.bind(s.topology.kind, s.topology.params, "topology.params")
    byz = s.byzantine
    if byz.nodes is None and byz.count > 0:
        PLACEMENTS.bind(byz.placement, byz.placement_params, "byzantine.placement_params")
    if byz.nodes or byz.count > 0 or s.topology.file:
        make_attack(byz.attack, byz.params)
    make_aggregator(s.aggregator.name, s.aggregator.params, pre=tuple(s.aggregator.pre))
    make_compressor(s.compression.name, s.compression.params)


def plan_sweep(
    scenario_path: str | Path | None,
    axes: Sequence[GridAxis],
    overrides: Sequence[str] = (),
    seeds: int = 1,
) -> list[PlannedCell]:
    """Every cell of the grid times ``seeds`` seeds (``run.seed`` .. ``run.seed + seeds - 1``).

    Loads and checks each cell's scenario; raises :class:`ConfigError` on the first
    bad key, value or name, before anything runs.
    """
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise ConfigError(f"--seeds: must be an integer >= 1, got {seeds!r}")
    base = load_scenario(scenario_path, overrides)
    cells = expand(axes, [base.run.seed + s for s in range(seeds)])
    planned: list[PlannedCell] = []
    by_id: dict[str, Cell] = {}
    for cell in cells:
        scenario = load_scenario(scenario_path, [*overrides, *cell.overrides])
        cid = cell_id(scenario)
        if cid in by_id:
            raise ConfigError(
                f"--grid: cells '{by_id[cid].label()}' and '{cell.label()}' are the same scenario"
            )
        by_id[cid] = cell
        planned.append(PlannedCell(cell, scenario, cid))
    # Names and parameters next (keys and types are checked above, for every cell first).
    # Seeds do not change names, so each distinct seedless scenario is checked once.
    checked: set[str] = set()
    for p in planned:
        key = cell_id(_without_seed(p.scenario))
        if key not in checked:
            check_names(p.scenario)
            checked.add(key)
    return planned


def _without_seed(scenario: Scenario) -> Scenario:
    return dataclasses.replace(scenario, run=dataclasses.replace(scenario.run, seed=0))


def execute_cell(payload: dict[str, Any]) -> Record:
    """Run one cell (in a worker process); never raises for a failing run."""
    from p2pfl.sim import simulate
    from p2pfl.sweep.metrics import run_metrics

    start = time.perf_counter()
    try:
        scenario = scenario_from_dict(payload["scenario"], payload["base_dir"])
        result = simulate(scenario)
        metrics = run_metrics(result)
    except (P2PFLError, ValueError) as exc:
        return failed_record(str(exc), start)
    except Exception as exc:  # a bug or a resource error: keep the sweep going, keep the trace
        tail = traceback.format_exc(limit=3).strip().splitlines()[-1]
        return failed_record(f"{type(exc).__name__}: {exc} ({tail})", start)
    return {"status": OK, "error": None, "wall_seconds": time.perf_counter() - start, **metrics}


def failed_record(message: str, start: float) -> Record:
    return {"status": FAILED, "error": message, "wall_seconds": time.perf_counter() - start}


def _init_worker() -> None:
    import torch

    # One thread per worker: J workers then use J cores instead of fighting over them.
    torch.set_num_threads(1)


def _cell_path(out: Path, cid: str) -> Path:
    return out / CELLS_DIR / f"{cid}.json"


def load_cell(out: Path, cid: str) -> Record | None:
    """The stored result of cell ``cid``, or None if absent or unreadable."""
    try:
        record = json.loads(_cell_path(out, cid).read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if not isinstance(record, dict) or record.get("status") not in (OK, FAILED):
        return None
    return record


def _finish(planned: PlannedCell, outcome: Record) -> Record:
    """A cell record: identity first, then the outcome, then the scenario it ran."""
    return {
        "cell": planned.id,
        "values": {k: display(v) for k, v in planned.cell.values},
        "seed": planned.cell.seed,
        **outcome,
        "scenario": planned.scenario.to_dict(),
    }


def run_sweep(
    planned: Sequence[PlannedCell],
    out: str | Path,
    jobs: int = 2,
    retry_failed: bool = False,
    on_done: Callable[[Record, bool], None] | None = None,
    execute: Execute = execute_cell,
    executor: str = "local",
    address: str | None = None,
) -> SweepRun:
    """Run the planned cells that have no stored result; return every cell's record.

    ``on_done(record, skipped)`` is called once per cell (skipped ones first).
    ``executor`` is a key of :data:`EXECUTORS`: ``"local"`` runs ``jobs == 1`` in this
    process and more in a spawn-context process pool; ``"ray"`` runs each cell as a
    Ray task (:mod:`p2pfl.sweep.ray_executor`) on the cluster at ``address`` (None: a
    local one with ``jobs`` CPUs). ``execute`` must be a module-level function when
    cells run in other processes.
    """
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ConfigError(f"--jobs: must be an integer >= 1, got {jobs!r}")
    if executor not in EXECUTORS:
        raise ConfigError(
            f"--executor: unknown executor {executor!r}; valid executors: {', '.join(EXECUTORS)}"
        )
    if address is not None and executor != "ray":
        raise ConfigError("--address: only with --executor ray (the Ray cluster to use)")
    out = Path(out)
    (out / CELLS_DIR).mkdir(parents=True, exist_ok=True)
    records: dict[str, Record] = {}
    pending: list[PlannedCell] = []
    for p in planned:
        stored = load_cell(out, p.id)
        if stored is not None and (stored["status"] == OK or not retry_failed):
            # The same scenario may come from a differently written grid: label it as now.
            stored.update(
                cell=p.id, values={k: display(v) for k, v in p.cell.values}, seed=p.cell.seed
            )
            records[p.id] = stored
            if on_done is not None:
                on_done(stored, True)
        else:
            pending.append(p)
    skipped = len(records)

    def done(p: PlannedCell, outcome: Record, persist: bool = True) -> None:
        record = _finish(p, outcome)
        if persist:
            from p2pfl.report import write_json

            write_json(_cell_path(out, p.id), record)
        records[p.id] = record
        if on_done is not None:
            on_done(record, False)

    if pending and executor == "ray":
        from p2pfl.sweep.ray_executor import run_on_ray

        run_on_ray(pending, execute, done, jobs, address)
    elif jobs == 1 or len(pending) <= 1:
        _run_inline(pending, execute, done)
    else:
        _run_pool(pending, execute, done, jobs)
    ordered = [records[p.id] for p in planned]
    failed = sum(1 for r in ordered if r["status"] != OK)
    return SweepRun(ordered, skipped, len(pending), failed)


def _run_inline(
    pending: Sequence[PlannedCell],
    execute: Execute,
    done: Callable[..., None],
) -> None:
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # same arithmetic as in a pool worker
    try:
        for p in pending:
            done(p, execute(p.payload()))
    finally:
        torch.set_num_threads(threads)


def _run_pool(
    pending: Sequence[PlannedCell],
    execute: Execute,
    done: Callable[..., None],
    jobs: int,
) -> None:
    # Arguments and results cross the process boundary as plain dicts of numbers and
    # strings (the standard library pickles them; no project object is ever pickled).
    ctx = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(
        max_workers=min(jobs, len(pending)), mp_context=ctx, initializer=_init_worker
    ) as pool:
        futures = {pool.submit(execute, p.payload()): p for p in pending}
        try:
            for fut in concurrent.futures.as_completed(futures):
                p = futures[fut]
                try:
                    outcome = fut.result()
                except BrokenProcessPool:
                    # Not the cell's fault (a worker was killed): report it, but store
                    # nothing, so that the next run retries the cell.
                    done(
                        p,
                        failed_record("worker process died (out of memory?)", time.perf_counter()),
                        persist=False,
                    )
                    continue
                done(p, outcome)
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise
