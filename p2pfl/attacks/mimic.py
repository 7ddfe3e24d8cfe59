"""Mimic (Karimireddy, He and Jaggi, "Byzantine-robust learning on heterogeneous
datasets via bucketing", ICLR 2022)."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from p2pfl.attacks.view import AttackView, require_honest


def check_mimic(*, index: int = 0, **_: Any) -> None:
    if index < 0:
        raise ValueError(f"mimic: parameter index must be >= 0, got {index!r}")


def mimic(view: AttackView, *, index: int = 0) -> Tensor:
    """Mimic: send an exact copy of one fixed honest vector, ``honest[index]``.

    Karimireddy et al. show that, with non-iid data, every Byzantine node copying
    the same honest worker over-weights that worker's data and biases the
    aggregate, while each copy is indistinguishable from an honest vector. The
    paper picks the copied worker once by a variance heuristic; here it is the
    fixed position ``index`` in ``view.honest``, which callers order by node id,
    so the same neighbour is copied every round while the honest set is stable.

    Needs at least one honest vector (the one it copies).
    """
    check_mimic(index=index)
    honest = require_honest(view, "mimic")
    h = honest.shape[0]
    if index >= h:
        raise ValueError(f"mimic: parameter index={index} is out of range for {h} honest vector(s)")
    return honest[index].to(view.own.dtype).clone()
