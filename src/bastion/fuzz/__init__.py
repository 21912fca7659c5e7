"""Fuzz testing of models: metamorphic mutants (DeepTest, DeepHunter) and coverage-guided fuzzing (TensorFuzz)."""

from bastion.fuzz.guided import CoverageGuidedFuzzer, GuidedFuzzResult
from bastion.fuzz.metamorphic import Finding, FuzzResult, MetamorphicFuzzer
from bastion.fuzz.transforms import TRANSFORMS, MutationLimits, apply_chain, within_limits

__all__ = [
    "TRANSFORMS",
    "CoverageGuidedFuzzer",
    "Finding",
    "FuzzResult",
    "GuidedFuzzResult",
    "MetamorphicFuzzer",
    "MutationLimits",
    "apply_chain",
    "within_limits",
]
