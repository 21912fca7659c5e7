"""Universal attacks: one patch or one perturbation that fools a model on most inputs (physical-world threats)."""

from bastion.attacks.universal.interface import PatternSuccess, UniversalResult, fooling_rate, pattern_success
from bastion.attacks.universal.patch import AdversarialPatch, apply_patch
from bastion.attacks.universal.perturbation import UniversalPerturbation

__all__ = [
    "AdversarialPatch",
    "PatternSuccess",
    "UniversalPerturbation",
    "UniversalResult",
    "apply_patch",
    "fooling_rate",
    "pattern_success",
]
