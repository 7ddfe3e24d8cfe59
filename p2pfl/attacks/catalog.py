"""The attack registry, ``ATTACKS``, and :func:`make_attack`, which checks parameters once."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from p2pfl.attacks.alie import alie, check_alie
from p2pfl.attacks.data_poisoning import backdoor, check_backdoor, label_flip
from p2pfl.attacks.dissensus import check_dissensus, dissensus
from p2pfl.attacks.fang import FANG, check_fang, fang
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
from p2pfl.attacks.view import Attack, AttackSpec, Needs, frozen_params
from p2pfl.errors import ConfigError
from p2pfl.registry import Registry, bind_parameters, import_object, is_import_path

OWN = Needs(text="nothing but its own vector")
DATA = Needs(text="nothing but its own training data")
SPREAD = Needs(
    honest=2, text="2+ honest vectors (their spread); with one it sends a copy of that vector"
)

ATTACKS: Registry[AttackSpec] = Registry(
    "attack",
    {
        "sign_flip": AttackSpec(sign_flip, "vector", "-scale * own", check_sign_flip, OWN),
        "gaussian": AttackSpec(
            gaussian, "vector", "N(0, sigma^2) noise, or own + noise", check_gaussian, OWN
        ),
        "scaled": AttackSpec(scaled, "vector", "lam * own", check_scaled, OWN),
        "random": AttackSpec(
            random, "vector", "uniform in [-a, a] per coordinate", check_random, OWN
        ),
        "zero": AttackSpec(zero, "vector", "the zero vector", needs=OWN),
        "silent": AttackSpec(silent, "silent", "sends nothing", needs=OWN),
        "alie": AttackSpec(
            alie,
            "vector",
            "mu + z sigma of the honest vectors (Baruch et al. 2019)",
            check_alie,
            SPREAD,
        ),
        "ipm": AttackSpec(
            ipm,
            "vector",
            "-eps * honest mean (Xie et al. 2020)",
            check_ipm,
            Needs(honest=1, text="1+ honest vectors (their mean)"),
        ),
        "min_max": AttackSpec(
            min_max,
            "vector",
            "mu + gamma p within the honest max distance (Shejwalkar & Houmansadr 2021)",
            check_min_max,
            SPREAD,
        ),
        "min_sum": AttackSpec(
            min_sum,
            "vector",
            "mu + gamma p within the honest max sum of squared distances (Shejwalkar & Houmansadr 2021)",
            check_min_sum,
            SPREAD,
        ),
        "fang_median": AttackSpec(
            fang,
            "vector",
            "beyond the honest extreme, against median (Fang et al. 2020)",
            check_fang,
            FANG,
        ),
        "fang_trimmed_mean": AttackSpec(
            fang,
            "vector",
            "beyond the honest extreme, against trimmed mean (Fang et al. 2020)",
            check_fang,
            FANG,
        ),
        "dissensus": AttackSpec(
            dissensus,
            "vector",
            "per target x_i - eps * pull_i / w_i (He, Karimireddy & Jaggi 2022)",
            check_dissensus,
            Needs(
                target_neighbours=True,
                text="each target's honest neighbours' vectors; a target none of whose "
                "honest neighbours it sees is sent its own vector (no effect)",
            ),
        ),
        "mimic": AttackSpec(
            mimic,
            "vector",
            "a copy of one fixed honest vector (Karimireddy et al. 2022)",
            check_mimic,
            Needs(honest=1, text="1+ honest vectors (it copies one)"),
        ),
        "label_flip": AttackSpec(label_flip, "data", "trains on labels y -> C - 1 - y", needs=DATA),
        "backdoor": AttackSpec(
            backdoor,
            "data",
            "trigger patch on a fraction of samples, relabelled",
            check_backdoor,
            DATA,
        ),
    },
    key="byzantine.attack",
    importable=True,
)


def attack_spec(name: str) -> AttackSpec:
    """The registered attack ``name``, or the one an import path ``package.module:object`` names.

    An imported object may be an :class:`AttackSpec` or a plain function
    ``craft(view, *, params) -> (d,) or (t, d)``, taken as a vector attack that
    needs no more than its own vector (see ``docs/extending.md``).
    """
    if not is_import_path(name):
        return ATTACKS[name]
    obj = import_object(name, "byzantine.attack")
    if isinstance(obj, AttackSpec):
        return obj
    doc = (obj.__doc__ or "").strip().splitlines()
    return AttackSpec(obj, "vector", doc[0] if doc else name)


def make_attack(
    name: str, params: Mapping[str, Any] | None = None, *, where: str = "byzantine.params"
) -> Attack:
    """The attack ``name`` (registered, or an import path) with ``params`` checked once and fixed.

    Unknown names raise :class:`~p2pfl.errors.UnknownNameError` naming the key and
    listing the valid ones; unknown parameter names, wrong types and out-of-range
    values raise :class:`~p2pfl.errors.ConfigError` naming ``where.<param>``.
    """
    spec = attack_spec(name)
    bound = bind_parameters(spec.craft, params or {}, where)
    try:
        spec.check(**bound)
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    return Attack(name=name, spec=spec, params=frozen_params(bound))
