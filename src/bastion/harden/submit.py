"""The gate hook: a hardened model goes to the retraining gate like any candidate, and is promoted only on a pass.

Example::

    outcome = submit(result.model, ModelRegistry("registry"), test, policy=load_policy("gate.toml"),
                     factory="bastion.models.zoo:DigitsCNN", train=train)
    outcome.promoted   # True only if every check of the policy passed
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from bastion.data.dataset import Dataset
from bastion.errors import ConfigError
from bastion.gate.gate import GateDecision, run_gate
from bastion.gate.policy import GatePolicy
from bastion.gate.registry import ModelRegistry, ModelVersion
from bastion.models.torch import TorchClassifier

__all__ = ["Submission", "submit"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Submission:
    """The gate's decision on a hardened model, the version it was registered as, and whether it became current."""

    decision: GateDecision
    version: ModelVersion
    promoted: bool


def submit(
    model: TorchClassifier,
    registry: ModelRegistry,
    test: Dataset,
    *,
    factory: str,
    policy: GatePolicy | None = None,
    train: Dataset | None = None,
    note: str = "hardened",
) -> Submission:
    """Run the gate of ``policy`` against the registry's current model on the trusted ``test`` set.

    The candidate is registered with the decision either way (the record of why it was refused is
    worth keeping) and promoted only if the decision passed. ``train`` is the data it was trained
    on, for the policy's poison scan. ``factory`` (``module:callable``) rebuilds its module.
    """
    if not factory:
        raise ConfigError("registering a hardened model needs the factory (module:callable) that builds its module")
    current = registry.load(device=str(model.device))
    if model.num_classes != current.num_classes:
        raise ConfigError(
            f"the hardened model has {model.num_classes} outputs and the registry's current model "
            f"{current.num_classes}: a reject-class model cannot replace a plain classifier through the gate"
        )
    decision = run_gate(current, model, test, policy=policy, candidate_data=train)
    version = registry.register(model, factory=factory, decision=decision, note=note)
    if decision.passed:
        registry.promote(version.version, reason=f"{note}: passed the gate")
    logger.info("hardened model registered as %s (%s)", version.version, "promoted" if decision.passed else "refused")
    return Submission(decision=decision, version=version, promoted=decision.passed)
