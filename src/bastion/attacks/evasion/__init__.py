"""Evasion attacks: one module each."""

from bastion.attacks.evasion.apgd import APGD, APGDT
from bastion.attacks.evasion.cw import CarliniWagnerL2
from bastion.attacks.evasion.deepfool import DeepFool
from bastion.attacks.evasion.fgsm import FGSM
from bastion.attacks.evasion.pgd import PGD

__all__ = ["APGD", "APGDT", "FGSM", "PGD", "CarliniWagnerL2", "DeepFool"]
