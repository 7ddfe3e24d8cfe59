"""The attack registry, ``ATTACKS``, and :func:`make_attack`, which checks parameters once."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from p2pfl.attacks.alie import alie, check_alie
from p2pfl.attacks.data_poisoning import backdoor, check_backdoor, label_flip
from p2pfl.attacks.dissensus import check_dissensus, dissensus
from p2pfl.attacks.fang import check_fang, fang
from p2pfl.attacks.ipm import check_ipm, ipm
from p2pfl.attacks.mimic import check_mimic, mimic
from p2pfl.attacks.minmax import check_min_max, check_min_sum, min_max, min_sum
from p2pfl.attacks.simple import (
    check_gaussian,
    check_random,
    check_scaled,
    check_sign_flip,
    gaussian,
    random,
    scaled,
    sign_flip,
    silent,
    zero,
)
from p2pfl.attacks.view import Attack, AttackSpec, frozen_params
from p2pfl.errors import ConfigError
from p2pfl.registry import Registry, bind_parameters

ATTACKS: Registry[AttackSpec] = Registry(
    "attack",
    {
        "sign_flip": AttackSpec(sign_flip, "vector", "-scale * own", check_sign_flip),
        "gaussian": AttackSpec(
            gaussian, "vector", "N(0, sigma^2) noise, or own + noise", check_gaussian
        ),
        "scaled": AttackSpec(scaled, "vector", "lam * own", check_scaled),
        "random": AttackSpec(random, "vector", "uniform in [-a, a] per coordinate", check_random),
        "zero": AttackSpec(zero, "vector", "the zero vector"),
        "silent": AttackSpec(silent, "silent", "sends nothing"),
        "alie": AttackSpec(
            alie, "vector", "mu + z sigma of the honest vectors (Baruch et al. 2019)", check_alie
        ),
        "ipm": AttackSpec(ipm, "vector", "-eps * honest mean (Xie et al. 2020)", check_ipm),
        "min_max": AttackSpec(
            min_max,
            "vector",
            "mu + gamma p within the honest max distance (Shejwalkar & Houmansadr 2021)",
            check_min_max,
        ),
        "min_sum": AttackSpec(
            min_sum,
            "vector",
            "mu + gamma p within the honest max sum of squared distances (Shejwalkar & Houmansadr 2021)",
            check_min_sum,
        ),
        "fang_median": AttackSpec(
            fang,
            "vector",
            "beyond the honest extreme, against median (Fang et al. 2020)",
            check_fang,
        ),
        "fang_trimmed_mean": AttackSpec(
            fang,
            "vector",
            "beyond the honest extreme, against trimmed mean (Fang et al. 2020)",
            check_fang,
        ),
        "dissensus": AttackSpec(
            dissensus,
            "vector",
            "per target x_i - eps * pull_i / w_i (He, Karimireddy & Jaggi 2022)",
            check_dissensus,
        ),
        "mimic": AttackSpec(
            mimic,
            "vector",
            "a copy of one fixed honest vector (Karimireddy et al. 2022)",
            check_mimic,
        ),
        "label_flip": AttackSpec(label_flip, "data", "trains on labels y -> C - 1 - y"),
        "backdoor": AttackSpec(
            backdoor, "data", "trigger patch on a fraction of samples, relabelled", check_backdoor
        ),
    },
)


def make_attack(
    name: str, params: Mapping[str, Any] | None = None, *, where: str = "byzantine.params"
) -> Attack:
    """The registered attack ``name`` with ``params`` checked once and fixed.

    Unknown names raise :class:`~p2pfl.errors.UnknownNameError` listing the valid
    ones; unknown parameter names, wrong types and out-of-range values raise
    :class:`~p2pfl.errors.ConfigError` (a ``ValueError``) naming ``where.<param>``.
    """
    spec = ATTACKS[name]
    bound = bind_parameters(spec.craft, params or {}, where)
    try:
        spec.check(**bound)
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    return Attack(name=name, spec=spec, params=frozen_params(bound))
