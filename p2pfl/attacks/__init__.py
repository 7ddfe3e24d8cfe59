"""Byzantine attacks: what a Byzantine node sends, or how it poisons its data.

See :mod:`p2pfl.attacks.view` for the calling convention. Registered names
(:data:`ATTACKS`): ``sign_flip``, ``gaussian``, ``scaled``, ``random``, ``zero``,
``silent``, ``alie``, ``ipm``, ``min_max``, ``min_sum``, ``fang_median``,
``fang_trimmed_mean``, ``dissensus``, ``mimic``, ``label_flip``, ``backdoor``; an
import path ``package.module:object`` names one written elsewhere (``docs/extending.md``).
Each spec says what its attack must see (:class:`Needs`).
"""

from p2pfl.attacks.alie import alie_z
from p2pfl.attacks.catalog import ATTACKS, make_attack
from p2pfl.attacks.data_poisoning import apply_trigger, attack_success_rate
from p2pfl.attacks.view import Attack, AttackKind, AttackSpec, AttackView, Needs

__all__ = [
    "ATTACKS",
    "Attack",
    "AttackKind",
    "AttackSpec",
    "AttackView",
    "Needs",
    "alie_z",
    "apply_trigger",
    "attack_success_rate",
    "make_attack",
]
