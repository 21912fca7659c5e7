"""What every registered trainer must do: determinism under a seed, the input untouched, figures per epoch."""

from __future__ import annotations

import copy
from dataclasses import replace

import pytest
import torch

from bastion.data import Dataset
from bastion.harden import TRAINERS, EpochStats, harden
from bastion.models import TorchClassifier

SETTINGS = {"eps": 0.2, "epochs": 1, "steps": 2, "batch_size": 64, "lr": 3e-3}


@pytest.fixture(scope="module")
def small_train(digits_train: Dataset) -> Dataset:
    return replace(digits_train, x=digits_train.x[:256], y=digits_train.y[:256], name="digits-256")


def weights(model: TorchClassifier) -> dict[str, torch.Tensor]:
    return {key: value.clone() for key, value in model.module.state_dict().items()}


@pytest.mark.parametrize("method", sorted(TRAINERS))
def test_every_trainer_is_deterministic_under_a_seed_and_leaves_its_input_alone(
    method: str, digits_model: TorchClassifier, small_train: Dataset
) -> None:
    before = weights(digits_model)
    x_before = small_train.x.clone()
    seen: list[EpochStats] = []
    first = harden(digits_model, small_train, method=method, seed=0, progress=seen.append, **SETTINGS)
    again = harden(digits_model, small_train, method=method, seed=0, **SETTINGS)
    other = harden(digits_model, small_train, method=method, seed=1, **SETTINGS)
    first_weights, again_weights, other_weights = weights(first.model), weights(again.model), weights(other.model)
    assert all(torch.equal(value, again_weights[key]) for key, value in first_weights.items())
    assert any(not torch.equal(value, other_weights[key]) for key, value in first_weights.items())
    assert first.history == tuple(seen) and len(seen) == 1
    assert all(torch.equal(before[key], value) for key, value in weights(digits_model).items())
    assert torch.equal(small_train.x, x_before)
    assert first.model.device == digits_model.device and not first.model.module.training
    assert first.manifest["method"] == method and first.seconds > 0


def test_the_callers_global_random_state_is_left_alone(digits_model: TorchClassifier, small_train: Dataset) -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    harden(digits_model, small_train, method="pgd", **SETTINGS)
    assert torch.equal(torch.rand(3), expected)


def test_a_given_validation_set_is_what_each_epoch_is_measured_on(
    digits_model: TorchClassifier, small_train: Dataset, digits_test: Dataset
) -> None:
    result = harden(digits_model, small_train, method="pgd", val=digits_test, **SETTINGS)
    evaluation = result.manifest["evaluation"]
    assert evaluation["source"] == "val" and evaluation["n_examples"] == len(digits_test)
    assert result.manifest["data"]["trained_on"] == len(small_train)


def test_a_trainer_instance_can_be_passed_as_the_method(digits_model: TorchClassifier, small_train: Dataset) -> None:
    from bastion.harden import PGDTraining

    result = harden(digits_model, small_train, method=PGDTraining(steps=1, step_size=0.1), **SETTINGS)
    assert result.manifest["settings"]["steps"] == 1 and result.manifest["settings"]["step_size"] == 0.1
    assert copy.deepcopy(result.manifest) == result.manifest
