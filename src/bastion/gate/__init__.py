"""The retraining gate: checks a candidate model against the current one on trusted data; a registry of versions."""

from bastion.gate.checks import CheckResult
from bastion.gate.gate import GateDecision, run_gate
from bastion.gate.policy import GatePolicy, RobustCheck, ScanCheck, load_policy
from bastion.gate.registry import ModelRegistry, ModelVersion, decision_to_json

__all__ = [
    "CheckResult",
    "GateDecision",
    "GatePolicy",
    "ModelRegistry",
    "ModelVersion",
    "RobustCheck",
    "ScanCheck",
    "decision_to_json",
    "load_policy",
    "run_gate",
]
