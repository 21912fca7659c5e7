"""FGSM: on a linear model, one step of size eps along sign(w) (Linf) or w / ||w|| (L2), in closed form."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from bastion.attacks import FGSM
from bastion.errors import ConfigError
from bastion.models import TorchClassifier

BinaryLinear = tuple[TorchClassifier, Tensor, Tensor, Tensor, Tensor]  # the conftest fixture: model, x, y, w, b


def _away_from_label(y: Tensor, w: Tensor) -> Tensor:
    """The direction that raises the other logit: +w for examples of class 0, -w for class 1."""
    return torch.where(y[:, None] == 0, w, -w)


def test_linf_step_is_eps_times_the_sign_of_w(binary_linear: BinaryLinear) -> None:
    model, x, y, w, _ = binary_linear
    result = FGSM()(model, x, y, norm="linf", eps=0.1)
    torch.testing.assert_close(result.x_adv, x + 0.1 * _away_from_label(y, w).sign())


def test_l2_step_is_eps_along_w(binary_linear: BinaryLinear) -> None:
    model, x, y, w, _ = binary_linear
    result = FGSM()(model, x, y, norm="l2", eps=0.3)
    torch.testing.assert_close(result.x_adv, x + 0.3 * _away_from_label(y, w) / w.norm())


def test_fooled_exactly_beyond_the_linf_distance(binary_linear: BinaryLinear) -> None:
    model, x, y, w, b = binary_linear
    result = FGSM()(model, x, y, norm="linf", eps=0.05)
    assert torch.equal(result.success, (x @ w + b).abs() / w.abs().sum() < 0.05)


def test_targeting_the_other_class_takes_the_same_step(
    binary_linear: BinaryLinear,
) -> None:
    model, x, y, _, _ = binary_linear
    untargeted = FGSM()(model, x, y, norm="linf", eps=0.1)
    targeted = FGSM()(model, x, y, norm="linf", eps=0.1, targets=1 - y)
    torch.testing.assert_close(targeted.x_adv, untargeted.x_adv)
    assert torch.equal(targeted.success, untargeted.success)


def test_one_gradient_and_the_final_check_per_example(
    binary_linear: BinaryLinear,
) -> None:
    model, x, y, _, _ = binary_linear
    result = FGSM()(model, x, y, norm="linf", eps=0.1)
    assert result.queries.tolist() == [2] * len(y)
    assert result.gradients.tolist() == [1] * len(y)
    assert model.queries.snapshot() == (2 * len(y), len(y))


def test_fgsm_needs_an_epsilon(binary_linear: BinaryLinear) -> None:
    model, x, y, _, _ = binary_linear
    with pytest.raises(ConfigError, match="needs an epsilon"):
        FGSM()(model, x, y, norm="linf")
