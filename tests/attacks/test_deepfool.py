"""DeepFool: one exact step across a linear boundary (L2 and Linf), candidates, accounting, refusals."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from bastion.attacks import DeepFool
from bastion.attacks.evasion.deepfool import STEP_SLACK
from bastion.errors import ConfigError
from bastion.models import TorchClassifier

BinaryLinear = tuple[TorchClassifier, Tensor, Tensor, Tensor, Tensor]  # the conftest fixture: model, x, y, w, b


@pytest.mark.parametrize(("norm", "dual"), [("l2", 2.0), ("linf", 1.0)])
@pytest.mark.parametrize("overshoot", [0.02, 0.0])
def test_one_step_lands_overshoot_past_a_linear_boundary(
    binary_linear: BinaryLinear, norm: str, dual: float, overshoot: float
) -> None:
    # The linearisation is exact: the first step goes straight to the boundary, |w.x + b| / ||w||_q away.
    model, x, y, w, b = binary_linear
    exact = (x @ w + b).abs() / torch.linalg.vector_norm(w, ord=dual)
    result = DeepFool(overshoot=overshoot)(model, x, y, norm=norm)
    assert bool(result.success.all())
    torch.testing.assert_close(result.distance, (1 + overshoot) * (exact + STEP_SLACK), rtol=1e-4, atol=1e-6)
    # One step, then one more pass that sees the flipped label, then the template's final check.
    assert result.gradients.tolist() == [2] * len(y)
    assert result.queries.tolist() == [3] * len(y)


def test_all_demo_images_fooled_and_candidates_trade_queries(
    mnist_model: TorchClassifier, mnist_xy: tuple[Tensor, Tensor]
) -> None:
    x, y = mnist_xy[0][:100], mnist_xy[1][:100]
    full = DeepFool()(mnist_model, x, y, norm="l2")
    top3 = DeepFool(candidates=3)(mnist_model, x, y, norm="l2")
    assert full.success_rate == 1.0 and top3.success_rate >= 0.98
    assert int(top3.gradients.sum()) < int(full.gradients.sum()) / 2
    # Fewer classes to choose from can only find a boundary as close or farther, step by step.
    assert float(full.distance.median()) <= float(top3.distance.median()) * 1.05


def test_linf_fools_every_demo_image(mnist_model: TorchClassifier, mnist_xy: tuple[Tensor, Tensor]) -> None:
    x, y = mnist_xy[0][:20], mnist_xy[1][:20]
    result = DeepFool()(mnist_model, x, y, norm="linf")
    assert result.success_rate == 1.0
    # PGD fools every one of these at eps 0.3; DeepFool's Linf steps land well inside that.
    assert float(result.distance.max()) < 0.3


@pytest.mark.parametrize(("candidates", "norm"), [(10, "l2"), (4, "linf")])
def test_query_counts_match_the_model(
    mnist_model: TorchClassifier, mnist_xy: tuple[Tensor, Tensor], candidates: int, norm: str
) -> None:
    x, y = mnist_xy[0][:24], mnist_xy[1][:24]
    before = mnist_model.queries.snapshot()
    result = DeepFool(candidates=candidates, steps=3)(mnist_model, x, y, norm=norm)
    spent = (mnist_model.queries.forward - before[0], mnist_model.queries.backward - before[1])
    assert (int(result.queries.sum()), int(result.gradients.sum())) == spent


def test_already_misclassified_examples_stay_put(binary_linear: BinaryLinear) -> None:
    model, x, y, _, _ = binary_linear
    result = DeepFool()(model, x, 1 - y, norm="l2")
    assert torch.equal(result.x_adv, x)
    assert bool(result.success.all())
    assert result.gradients.tolist() == [1] * len(y)


@pytest.mark.parametrize(
    ("attack", "message"),
    [
        (DeepFool(steps=0), "expected steps >= 1, got 0"),
        (DeepFool(overshoot=-0.1), "expected overshoot >= 0.0, got -0.1"),
        (DeepFool(candidates=1), "expected candidates >= 2, got 1"),
    ],
)
def test_bad_settings_are_refused(binary_linear: BinaryLinear, attack: DeepFool, message: str) -> None:
    model, x, y, _, _ = binary_linear
    with pytest.raises(ConfigError, match=message):
        attack(model, x, y, norm="l2")


def test_targets_and_l1_are_refused(binary_linear: BinaryLinear) -> None:
    model, x, y, _, _ = binary_linear
    with pytest.raises(ConfigError, match="deepfool is an untargeted attack: pass no targets"):
        DeepFool()(model, x, y, norm="l2", targets=1 - y)
    with pytest.raises(ConfigError, match="deepfool does not support the l1 norm: expected one of l2, linf"):
        DeepFool()(model, x, y, norm="l1")
