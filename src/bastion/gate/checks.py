"""The gate's checks: named functions comparing a candidate model with the current one on trusted data.

Each returns a :class:`CheckResult` with its measured value and threshold, so that a decision can
be read (and replayed) without re-running anything.
"""

from __future__ import annotations

import inspect
import logging
from dataclasses import dataclass

import torch

from bastion.attacks.registry import ATTACKS
from bastion.data.dataset import Dataset
from bastion.errors import ConfigError
from bastion.gate.policy import GatePolicy, RobustCheck, ScanCheck
from bastion.models.interface import Classifier, predict

__all__ = [
    "CheckResult",
    "accuracy_check",
    "class_accuracy_check",
    "per_class_accuracy",
    "robust_accuracy",
    "robust_check",
    "scan_check",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CheckResult:
    """One check's outcome: ``value`` against ``threshold`` (both in the check's own unit), and why."""

    name: str
    passed: bool
    value: float
    threshold: float
    detail: str
    skipped: bool = False


def _labels(model: Classifier, data: Dataset, batch_size: int = 512) -> torch.Tensor:
    with model.inference():
        parts = [
            predict(model, data.x[i : i + batch_size].to(model.device)).cpu() for i in range(0, len(data), batch_size)
        ]
    return torch.cat(parts)


def per_class_accuracy(model: Classifier, data: Dataset) -> tuple[float, dict[int, float]]:
    """Overall accuracy and accuracy per class present in ``data``."""
    correct = _labels(model, data) == data.y
    per_class = {int(c): float(correct[data.y == c].float().mean()) for c in torch.unique(data.y)}
    return float(correct.float().mean()), per_class


def accuracy_check(current: float, candidate: float, policy: GatePolicy) -> CheckResult:
    drop = current - candidate
    passed = drop <= policy.max_accuracy_drop and candidate >= policy.min_accuracy
    detail = f"accuracy {current:.4f} -> {candidate:.4f} (drop {drop:+.4f}, allowed {policy.max_accuracy_drop:.4f})"
    if candidate < policy.min_accuracy:
        detail += f"; below the floor {policy.min_accuracy:.4f}"
    return CheckResult("accuracy_drop", passed, drop, policy.max_accuracy_drop, detail)


def class_accuracy_check(current: dict[int, float], candidate: dict[int, float], policy: GatePolicy) -> CheckResult:
    drops = {c: current[c] - candidate.get(c, 0.0) for c in current}
    worst = max(drops, key=lambda c: drops[c])
    passed = drops[worst] <= policy.max_class_drop
    after = candidate.get(worst, 0.0)
    detail = f"worst class {worst}: {current[worst]:.4f} -> {after:.4f} (allowed drop {policy.max_class_drop:.4f})"
    return CheckResult("class_accuracy_drop", passed, drops[worst], policy.max_class_drop, detail)


def robust_accuracy(model: Classifier, data: Dataset, check: RobustCheck) -> float:
    """Accuracy under the fixed attack budget ``check`` names, on its first ``examples`` inputs."""
    if check.attack not in ATTACKS:
        raise ConfigError(f"unknown attack {check.attack!r} for the gate; expected one of {', '.join(sorted(ATTACKS))}")
    factory = ATTACKS[check.attack]
    attack = factory(steps=check.steps) if "steps" in inspect.signature(factory).parameters else factory()
    x, y = data.x[: check.examples].to(model.device), data.y[: check.examples].to(model.device)
    result = attack(model, x, y, norm=check.norm, eps=check.eps, seed=check.seed)
    return 1.0 - result.success_rate


def robust_check(current: Classifier, candidate: Classifier, data: Dataset, check: RobustCheck) -> CheckResult:
    before, after = robust_accuracy(current, data, check), robust_accuracy(candidate, data, check)
    drop = before - after
    detail = (
        f"robust accuracy under {check.attack} {check.norm} eps={check.eps} ({check.steps} steps, "
        f"{min(check.examples, len(data))} examples): {before:.4f} -> {after:.4f} (allowed drop {check.max_drop:.4f})"
    )
    return CheckResult("robust_accuracy_drop", drop <= check.max_drop, drop, check.max_drop, detail)


def scan_check(candidate: Classifier, training: Dataset | None, check: ScanCheck) -> CheckResult:
    """A poison scan over the candidate's training data; skipped (and said so) when that data is not given."""
    if training is None:
        return CheckResult("poison_scan", True, 0.0, 0.0, "skipped: the candidate's training data was not given", True)
    from bastion.defences import ActivationClustering, SpectralSignatures

    if check.method == "spectral":
        verdict = SpectralSignatures(poison_rate=check.expected_rate)(candidate, training).verdict
    else:
        verdict = ActivationClustering()(candidate, training).verdict
    return CheckResult(f"poison_scan:{check.method}", verdict.passed, verdict.value, verdict.threshold, verdict.detail)
