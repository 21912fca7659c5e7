"""Fuzz testing of models and of the input pipeline.

Models: metamorphic mutants (DeepTest, DeepHunter) and coverage-guided fuzzing (TensorFuzz), with
float16 / int8 copies for the disagreement oracle. The pipeline: Bastion's own decoders under
hypothesis (and libFuzzer, :mod:`bastion.fuzz.libfuzzer`), a running gateway through its OpenAPI.
"""

from bastion.fuzz.guided import CoverageGuidedFuzzer, GuidedFuzzResult
from bastion.fuzz.http import fuzz_gateway
from bastion.fuzz.metamorphic import Finding, FuzzResult, MetamorphicFuzzer
from bastion.fuzz.pipeline import DecoderTarget, PipelineFinding, PipelineResult, fuzz_decoders
from bastion.fuzz.run import FuzzOptions, run_fuzz
from bastion.fuzz.transforms import TRANSFORMS, MutationLimits, apply_chain, within_limits
from bastion.fuzz.validity import ValidityResult, check_validity
from bastion.fuzz.variants import half_precision, int8_weights

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
    "half_precision",
    "int8_weights",
    "run_fuzz",
    "within_limits",
]
