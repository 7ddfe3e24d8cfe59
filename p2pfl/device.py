"""``run.device``: where the simulator and the node keep their tensors.

``"cpu"`` (the default), ``"cuda"`` (the current CUDA device) or ``"cuda:N"``. The
name's form is checked when the scenario is loaded; whether the device exists is
checked when a run starts (:func:`resolve_device`), so a scenario written on a GPU
machine still loads (and validates) on a laptop.
"""

from __future__ import annotations

import re

import torch

from p2pfl.errors import ConfigError

_FORM = re.compile(r"^(cpu|cuda(:\d+)?)$")


def check_device_name(name: str) -> None:
    """A ConfigError unless ``name`` is ``cpu``, ``cuda`` or ``cuda:N``."""
    if not _FORM.match(name):
        raise ConfigError(f"run.device: expected 'cpu', 'cuda' or 'cuda:N', got {name!r}")


def resolve_device(name: str, local_rank: int | None = None) -> torch.device:
    """The :class:`torch.device` ``name`` names, if this machine has it.

    ``local_rank`` (a torchrun rank on this machine) picks ``cuda:local_rank`` for a
    plain ``"cuda"``. A missing device is a :class:`~p2pfl.errors.ConfigError` that
    says what the machine has.
    """
    check_device_name(name)
    if name == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        build = (
            f"this torch ({torch.__version__}) is built without CUDA"
            if torch.version.cuda is None
            else "no CUDA device is visible (check CUDA_VISIBLE_DEVICES and the driver)"
        )
        raise ConfigError(f"run.device: {name!r} requested but {build}; use run.device='cpu'")
    count = torch.cuda.device_count()
    index = int(name.split(":")[1]) if ":" in name else (local_rank or 0)
    if index >= count:
        raise ConfigError(
            f"run.device: {name!r} requested"
            + (f" (rank on cuda:{index})" if ":" not in name else "")
            + f" but this machine has {count} CUDA device(s): cuda:0..cuda:{count - 1}"
        )
    return torch.device("cuda", index)
