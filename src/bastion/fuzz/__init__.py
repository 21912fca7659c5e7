"""Fuzz testing of models: metamorphic mutants of seeds whose prediction changes (DeepTest, DeepHunter)."""

from bastion.fuzz.metamorphic import Finding, FuzzResult, MetamorphicFuzzer
from bastion.fuzz.transforms import TRANSFORMS, MutationLimits, apply_chain, within_limits

__all__ = ["TRANSFORMS", "Finding", "FuzzResult", "MetamorphicFuzzer", "MutationLimits", "apply_chain", "within_limits"]
