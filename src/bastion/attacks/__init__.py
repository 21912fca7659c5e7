"""Attacks: the Attack template, its result, and every registered technique."""

from bastion.attacks.evasion import FGSM, PGD
from bastion.attacks.interface import Attack, AttackResult, Ledger
from bastion.attacks.registry import ATTACKS, make_attack

__all__ = ["ATTACKS", "FGSM", "PGD", "Attack", "AttackResult", "Ledger", "make_attack"]
