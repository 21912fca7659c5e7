"""The model registry: versions on disk as safetensors, promotion only on a passed decision, rollback."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from bastion.data import load_demo
from bastion.errors import InvalidInputError, NotFoundError
from bastion.gate import GatePolicy, ModelRegistry, run_gate
from bastion.gate.gate import model_digest
from bastion.models import TorchClassifier
from bastion.training import demo_recipe

FACTORY = "bastion.models.zoo:DigitsCNN"


@pytest.fixture(scope="module")
def models(bastion_cache_dir: Path) -> list[TorchClassifier]:
    recipe = demo_recipe("digits", epochs=3)
    train = load_demo("digits", "train")
    return [recipe.fit(train, seed=seed) for seed in range(2)]


def test_register_promote_load_and_rollback(tmp_path: Path, models: list[TorchClassifier]) -> None:
    registry = ModelRegistry(tmp_path / "registry")
    assert registry.current() is None and registry.versions() == []
    base = registry.register(models[0], factory=FACTORY, note="baseline")
    registry.promote(base.version, reason="baseline")
    decision = run_gate(
        models[0],
        models[1],
        load_demo("digits", "test"),
        policy=GatePolicy(max_accuracy_drop=1, robust=None, scan=None),
    )
    second = registry.register(models[1], factory=FACTORY, decision=decision)
    assert (second.parent, second.passed) == (base.version, True)
    registry.promote(second.version)
    loaded = registry.load()
    assert model_digest(loaded) == model_digest(models[1])
    x = load_demo("digits", "test").x[:16]
    torch.testing.assert_close(loaded.logits(x), models[1].logits(x))
    assert registry.rollback(reason="regression in production").version == base.version
    current = registry.current()
    assert current is not None and current.version == base.version
    assert [event["event"] for event in registry.history()] == ["promote", "promote", "rollback"]
    assert (tmp_path / "registry" / "versions" / "v0002" / "model.safetensors").is_file()


def test_a_failed_or_undecided_version_cannot_be_promoted(tmp_path: Path, models: list[TorchClassifier]) -> None:
    registry = ModelRegistry(tmp_path)
    registry.promote(registry.register(models[0], factory=FACTORY).version)
    strict = GatePolicy(min_accuracy=1.0, robust=None, scan=None)  # a perfect score is required: fails
    failed = registry.register(
        models[1], factory=FACTORY, decision=run_gate(models[0], models[1], load_demo("digits", "test"), policy=strict)
    )
    with pytest.raises(InvalidInputError, match="failed its gate decision"):
        registry.promote(failed.version)
    undecided = registry.register(models[1], factory=FACTORY)
    with pytest.raises(InvalidInputError, match="no gate decision"):
        registry.promote(undecided.version)
    with pytest.raises(NotFoundError, match="v0009"):
        registry.promote("v0009")
    with pytest.raises(InvalidInputError, match="nothing to roll back"):
        registry.rollback()
