"""Fuzz testing of models: metamorphic mutants (DeepTest, DeepHunter) and coverage-guided fuzzing (TensorFuzz)."""

from bastion.fuzz.guided import CoverageGuidedFuzzer, GuidedFuzzResult
from bastion.fuzz.http import fuzz_gateway
from bastion.fuzz.metamorphic import Finding, FuzzResult, MetamorphicFuzzer
from bastion.fuzz.pipeline import DecoderTarget, PipelineFinding, PipelineResult, fuzz_decoders
from bastion.fuzz.run import FuzzOptions, run_fuzz
from bastion.fuzz.transforms import TRANSFORMS, MutationLimits, apply_chain, within_limits
from bastion.fuzz.validity import ValidityResult, check_validity

__all__ = [
    "TRANSFORMS",
    "CoverageGuidedFuzzer",
    "DecoderTarget",
    "Finding",
    "FuzzOptions",
    "FuzzResult",
    "GuidedFuzzResult",
    "MetamorphicFuzzer",
    "MutationLimits",
    "PipelineFinding",
    "PipelineResult",
    "ValidityResult",
    "apply_chain",
    "check_validity",
    "fuzz_decoders",
    "fuzz_gateway",
    "run_fuzz",
    "within_limits",
]
