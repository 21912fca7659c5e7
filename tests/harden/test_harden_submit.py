"""The gate hook: a hardened model is judged by the retraining gate like any candidate, promoted only on a pass."""

from __future__ import annotations

from pathlib import Path

import pytest

from bastion.data import Dataset
from bastion.errors import ConfigError
from bastion.gate import GatePolicy, ModelRegistry, RobustCheck
from bastion.gate.gate import model_digest
from bastion.harden import HardenResult
from bastion.harden.submit import submit
from bastion.models import TorchClassifier

FACTORY = "bastion.models.zoo:DigitsCNN"


@pytest.fixture
def registry(tmp_path: Path, digits_model: TorchClassifier) -> ModelRegistry:
    opened = ModelRegistry(tmp_path / "registry")
    opened.promote(opened.register(digits_model, factory=FACTORY, note="baseline").version, reason="baseline")
    return opened


def test_a_hardened_model_that_passes_the_gate_is_promoted(
    registry: ModelRegistry, pgd_hardened: HardenResult, digits_test: Dataset, digits_train: Dataset
) -> None:
    # Robustness is what this candidate brings: allow the clean cost, require no robust drop at eps 0.2.
    policy = GatePolicy(
        max_accuracy_drop=0.1,
        max_class_drop=0.3,
        robust=RobustCheck(eps=0.2, steps=10, examples=64, max_drop=0.0),
        scan=None,
    )
    outcome = submit(pgd_hardened.model, registry, digits_test, factory=FACTORY, policy=policy, train=digits_train)
    assert outcome.decision.passed and outcome.promoted
    robust = next(check for check in outcome.decision.checks if check.name.startswith("robust"))
    assert robust.passed
    current = registry.current()
    assert current is not None and current.version == outcome.version.version == "v0002"
    assert model_digest(registry.load()) == model_digest(pgd_hardened.model)


def test_a_hardened_model_the_gate_refuses_is_registered_but_not_promoted(
    registry: ModelRegistry, pgd_hardened: HardenResult, digits_test: Dataset
) -> None:
    strict = GatePolicy(max_accuracy_drop=0.0, min_accuracy=0.999, robust=None, scan=None)
    outcome = submit(pgd_hardened.model, registry, digits_test, factory=FACTORY, policy=strict)
    assert not outcome.decision.passed and not outcome.promoted
    assert outcome.version.passed is False
    current = registry.current()
    assert current is not None and current.version == "v0001"


def test_a_reject_class_model_cannot_replace_a_plain_classifier(
    registry: ModelRegistry, reject_hardened: HardenResult, digits_test: Dataset
) -> None:
    with pytest.raises(ConfigError, match="11 outputs and the registry's current model 10"):
        submit(reject_hardened.model, registry, digits_test, factory=FACTORY)
    assert [v.version for v in registry.versions()] == ["v0001"]
