"""Bad input is refused up front with an error that names the value and what was expected."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from torch import nn

from bastion.data import Dataset
from bastion.errors import ConfigError, DataError, ModelError
from bastion.harden import TRAINERS, harden, make_trainer, with_reject_class
from bastion.models import TorchClassifier


@pytest.fixture(scope="module")
def tiny(digits_train: Dataset) -> Dataset:
    return replace(digits_train, x=digits_train.x[:64], y=digits_train.y[:64])


def test_an_unknown_method_names_the_choices(digits_model: TorchClassifier, tiny: Dataset) -> None:
    with pytest.raises(ConfigError, match=r"unknown hardening method 'madry': expected one of fgsm-rs, pgd, reject"):
        harden(digits_model, tiny, method="madry")


def test_a_model_without_trainable_parameters_is_refused(digits_model: TorchClassifier, tiny: Dataset) -> None:
    frozen = TorchClassifier(
        nn.Sequential(nn.Flatten(), nn.Linear(64, 10)).requires_grad_(False), input_shape=(1, 8, 8)
    )
    with pytest.raises(ModelError, match="no parameters that require gradients"):
        harden(frozen, tiny)
    parameterless = TorchClassifier(nn.Sequential(nn.Flatten(), nn.Identity()), input_shape=(1, 4, 4), num_classes=16)
    with pytest.raises(ModelError, match="cannot be trained"):
        harden(parameterless, tiny)


def test_not_a_torch_model_is_refused(tiny: Dataset) -> None:
    with pytest.raises(ConfigError, match="harden trains PyTorch models"):
        harden("demo:digits", tiny)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("eps", "norm", "match"),
    [
        (1.5, "linf", r"expected eps in \(0, 1\] for the linf norm on inputs in \[0, 1\], got 1.5"),
        (0.0, "linf", r"expected eps in \(0, 1\].*got 0.0"),
        (-0.1, "linf", r"got -0.1"),
        (float("nan"), "linf", r"got nan"),
        (9.0, "l2", r"expected eps in \(0, 8\] for the l2 norm"),  # the diagonal of the 8x8 box
    ],
)
def test_an_epsilon_outside_the_data_range_is_refused(
    digits_model: TorchClassifier, tiny: Dataset, eps: float, norm: str, match: str
) -> None:
    with pytest.raises(ConfigError, match=match):
        harden(digits_model, tiny, eps=eps, norm=norm)


def test_data_without_labels_is_refused(digits_model: TorchClassifier, tiny: Dataset) -> None:
    with pytest.raises(DataError, match="needs one label per input; the data has none"):
        harden(digits_model, replace(tiny, y=None))  # type: ignore[arg-type]
    with pytest.raises(DataError, match="needs one label per input"):
        harden(digits_model, replace(tiny, y=torch.zeros(0, dtype=torch.long)))
    with pytest.raises(DataError, match="label 12 is out of range for a model with 10 classes"):
        harden(digits_model, replace(tiny, y=torch.full_like(tiny.y, 12)))
    with pytest.raises(DataError, match=r"val .*needs one label per input"):
        harden(digits_model, tiny, val=replace(tiny, y=None))  # type: ignore[arg-type]


def test_data_that_does_not_fit_the_model_is_refused(digits_model: TorchClassifier, tiny: Dataset) -> None:
    with pytest.raises(DataError, match=r"the model expects \(1, 8, 8\)"):
        harden(digits_model, replace(tiny, x=tiny.x.reshape(64, 64)))
    with pytest.raises(DataError, match="outside the model's bounds"):
        harden(digits_model, replace(tiny, x=tiny.x * 2, bounds=(0.0, 2.0)))


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"epochs": 0}, "expected epochs >= 1, got 0"),
        ({"steps": 0}, "expected steps >= 1, got 0"),
        ({"batch_size": 0}, "expected batch_size >= 1, got 0"),
        ({"lr": 0.0}, "expected lr > 0, got 0.0"),
        ({"step_size": -0.1}, "expected step_size > 0, got -0.1"),
        ({"method": "trades", "beta": -1.0}, "expected beta >= 0, got -1.0"),
        ({"norm": "l3"}, "unknown norm 'l3'"),
    ],
)
def test_impossible_settings_are_refused(
    digits_model: TorchClassifier, tiny: Dataset, options: dict[str, object], match: str
) -> None:
    with pytest.raises(ConfigError, match=match):
        harden(digits_model, tiny, **options)  # type: ignore[arg-type]


def test_a_reject_class_needs_a_final_linear_layer() -> None:
    with pytest.raises(ModelError, match=r"widens the model's last nn\.Linear layer with 10 outputs"):
        with_reject_class(nn.Sequential(nn.Flatten(), nn.Linear(64, 5)), 10)


def test_make_trainer_takes_the_options_each_trainer_has() -> None:
    assert sorted(TRAINERS) == ["fgsm-rs", "pgd", "reject-class", "trades"]
    assert make_trainer("trades", steps=3, beta=2.0).config() == {"steps": 3, "step_size": None, "beta": 2.0}
    assert make_trainer("fgsm-rs", steps=3, beta=2.0).config() == {"step_size": None, "random_start": True}
