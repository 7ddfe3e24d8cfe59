"""One rank of distributed simulations, for tests: ``torchrun ... distributed_rank.py OUT CASE...``.

Each ``CASE`` is ``NAME=SET;SET;...``: a :class:`~p2pfl.sim.distributed.DistributedSimulation`
of the default scenario with those ``--set`` overrides, run one after the other in
one process group (one start-up for all). Rank 0 writes ``OUT/NAME/params.npy``
(every node's final vector), ``accuracy.npy`` (one row per evaluation) and
``diverged.npy`` (node, round pairs), as plain arrays (no pickle).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

from p2pfl.config import load_scenario
from p2pfl.experiment import build_experiment
from p2pfl.sim.distributed import Comm, DistributedSimulation


def run_case(comm: Comm, out: Path, overrides: list[str]) -> None:
    result = DistributedSimulation(build_experiment(load_scenario(None, overrides)), comm).run()
    if comm.rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        np.save(out / "params.npy", result.params.numpy(), allow_pickle=False)
        acc = torch.stack([m.accuracy for m in result.history]).numpy()
        np.save(out / "accuracy.npy", acc, allow_pickle=False)
        div = np.array(sorted(result.diverged.items()), dtype=np.int64).reshape(-1, 2)
        np.save(out / "diverged.npy", div, allow_pickle=False)


def main(out: Path, cases: list[str]) -> None:
    torch.set_num_threads(1)
    comm = Comm.start(torch.device("cpu"), timeout_s=120)
    try:
        for case in cases:
            name, _, sets = case.partition("=")
            run_case(comm, out / name, sets.split(";"))
    finally:
        comm.close()


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2:])
