"""Attacks: the Attack template, its result, and every registered technique."""

from bastion.attacks.blackbox import BoundaryAttack, HopSkipJump, SimBA, Square
from bastion.attacks.evasion import APGD, APGDT, FGSM, PGD, CarliniWagnerL2, DeepFool
from bastion.attacks.interface import Attack, AttackResult, Ledger
from bastion.attacks.registry import ATTACKS, make_attack

__all__ = [
    "APGD",
    "APGDT",
    "ATTACKS",
    "FGSM",
    "PGD",
    "Attack",
    "AttackResult",
    "BoundaryAttack",
    "CarliniWagnerL2",
    "DeepFool",
    "HopSkipJump",
    "Ledger",
    "SimBA",
    "Square",
    "make_attack",
]
