"""Model extraction reaches high agreement with the demo CNN within its budget; transfer attacks work."""

from __future__ import annotations

import pytest
import torch

from bastion.attacks import PGD
from bastion.attacks.extraction import Extraction, agreement, transfer_attack
from bastion.data import load_demo
from bastion.demo import demo_model
from bastion.errors import ConfigError, DataError
from bastion.models import TorchClassifier, restrict
from bastion.models.zoo import MnistCNN


@pytest.fixture(scope="module")
def target() -> TorchClassifier:
    return demo_model("mnist")


@pytest.fixture(scope="module")
def stolen(target: TorchClassifier):  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    seeds = load_demo("mnist", "train").x
    scores = restrict(target, "scores")
    target.queries.forward = 0
    result = Extraction(budget=6000, epochs=6)(scores, seeds, MnistCNN(), seed=0)
    return result, target.queries.forward


def test_agreement_above_90_percent_within_budget(stolen, target: TorchClassifier) -> None:  # type: ignore[no-untyped-def]
    result, spent = stolen
    assert spent == result.queries == 6000 <= 20000
    assert result.soft_labels
    holdout = load_demo("mnist", "test")
    assert agreement(result.surrogate, target, holdout.x) >= 0.90


def test_labels_only_target_still_extracts(target: TorchClassifier) -> None:
    torch.manual_seed(1)
    seeds = load_demo("mnist", "train").x[:2000]
    result = Extraction(budget=2000, epochs=5)(restrict(target, "labels"), seeds, MnistCNN(), seed=1)
    assert not result.soft_labels
    assert agreement(result.surrogate, target, load_demo("mnist", "test").x[:500]) >= 0.85


def test_transfer_attack_from_the_surrogate(stolen, target: TorchClassifier) -> None:  # type: ignore[no-untyped-def]
    result, _ = stolen
    test = load_demo("mnist", "test")
    x, y = test.x[:100], test.y[:100]
    before = target.queries.forward
    transfer = transfer_attack(PGD(steps=20), result.surrogate, restrict(target, "labels"), x, y, eps=0.3)
    assert transfer.target_queries == 100 == target.queries.forward - before
    assert transfer.success_rate >= 0.8  # measured 1.0 on 200 images; random sign noise at eps 0.3: 0.03
    assert transfer.transfer_rate >= transfer.success_rate - 0.05


def test_bad_input() -> None:
    target = demo_model("digits")
    seeds = load_demo("digits", "train").x[:10]
    with pytest.raises(ConfigError, match=r"expected a query budget > 0, got 0"):
        Extraction(budget=0)(target, seeds, torch.nn.Linear(64, 10))
    with pytest.raises(DataError, match=r"seed inputs have shape \(64,\), the target expects \(1, 8, 8\)"):
        Extraction(budget=10)(target, seeds.reshape(10, 64), torch.nn.Linear(64, 10))
