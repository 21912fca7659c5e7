"""The retraining gate: a candidate model replaces the current one only if every check of the policy passes.

Example::

    decision = run_gate(current, candidate, trusted_test, policy=load_policy("gate.toml"),
                        candidate_data=new_training_set)
    if decision.passed:
        registry.promote(registry.register(candidate, decision=decision))
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

import torch

from bastion.data.dataset import Dataset
from bastion.errors import DataError, ModelError
from bastion.gate.checks import (
    CheckResult,
    accuracy_check,
    class_accuracy_check,
    per_class_accuracy,
    robust_check,
    scan_check,
)
from bastion.gate.policy import GatePolicy
from bastion.models.interface import Classifier

__all__ = ["GateDecision", "data_digest", "model_digest", "run_gate"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class GateDecision:
    """The recorded outcome: passed only if every check passed; each check with its value and threshold."""

    passed: bool
    checks: tuple[CheckResult, ...]
    current: str  # digests of the weights (or the model's name when it has none)
    candidate: str
    test_set: str  # digest of the trusted test set
    policy: GatePolicy
    time: datetime = field(default_factory=lambda: datetime.now(UTC))
    seconds: float = 0.0

    @property
    def failed(self) -> tuple[CheckResult, ...]:
        return tuple(check for check in self.checks if not check.passed)

    def summary(self) -> str:
        verdict = "PASS" if self.passed else "FAIL"
        return f"{verdict}: " + "; ".join(
            f"{c.name} {'ok' if c.passed else 'FAILED'} ({c.detail})" for c in self.checks
        )


def run_gate(
    current: Classifier,
    candidate: Classifier,
    trusted_test: Dataset,
    *,
    policy: GatePolicy | None = None,
    candidate_data: Dataset | None = None,
) -> GateDecision:
    """Every check of ``policy`` on the trusted test set (and the candidate's training data, when given)."""
    policy = policy or GatePolicy()
    _check_compatible(current, candidate, trusted_test)
    started = time.perf_counter()
    before, before_classes = per_class_accuracy(current, trusted_test)
    after, after_classes = per_class_accuracy(candidate, trusted_test)
    checks = [accuracy_check(before, after, policy), class_accuracy_check(before_classes, after_classes, policy)]
    if policy.robust is not None:
        checks.append(robust_check(current, candidate, trusted_test, policy.robust))
    if policy.scan is not None and policy.scan.method != "none":
        checks.append(scan_check(candidate, candidate_data, policy.scan))
    decision = GateDecision(
        passed=all(check.passed for check in checks),
        checks=tuple(checks),
        current=model_digest(current),
        candidate=model_digest(candidate),
        test_set=data_digest(trusted_test),
        policy=policy,
        seconds=time.perf_counter() - started,
    )
    logger.info("gate: %s", decision.summary())
    return decision


def _check_compatible(current: Classifier, candidate: Classifier, data: Dataset) -> None:
    if tuple(candidate.input_shape) != tuple(current.input_shape):
        raise ModelError(
            f"the candidate takes inputs of shape {tuple(candidate.input_shape)}, the current model "
            f"{tuple(current.input_shape)}: it cannot replace it"
        )
    if candidate.num_classes != current.num_classes:
        raise ModelError(f"the candidate has {candidate.num_classes} classes, the current model {current.num_classes}")
    if data.input_shape != tuple(current.input_shape):
        raise DataError(
            f"the trusted test set has inputs of shape {data.input_shape}, the models take {current.input_shape}"
        )
    if len(data) == 0:
        raise DataError("the trusted test set is empty")


def model_digest(model: Classifier) -> str:
    """SHA-256 of a torch model's weights (in state-dict order), or ``name:<name>`` for other kinds."""
    module = getattr(model, "module", None)
    if not isinstance(module, torch.nn.Module):
        return f"name:{getattr(model, 'name', type(model).__name__)}"
    digest = hashlib.sha256()
    for key, tensor in module.state_dict().items():
        digest.update(key.encode())
        digest.update(tensor.detach().to("cpu").contiguous().numpy().tobytes())
    return digest.hexdigest()


def data_digest(data: Dataset) -> str:
    digest = hashlib.sha256(data.x.detach().to("cpu").contiguous().numpy().tobytes())
    digest.update(data.y.detach().to("cpu").contiguous().numpy().tobytes())
    return digest.hexdigest()
