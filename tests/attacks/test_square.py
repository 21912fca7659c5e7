"""Square Attack on the MNIST demo CNN seen through its scores only, and its query budget."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import Tensor

from bastion.attacks import Square
from bastion.attacks.blackbox.square import p_schedule
from bastion.errors import ConfigError
from bastion.models import TorchClassifier, restrict

LinearFactory = Callable[..., TorchClassifier]


def spent(model: TorchClassifier, before: tuple[int, int]) -> int:
    return model.queries.forward - before[0]


def test_linf_eps_03_fools_90_percent_within_1000_queries(
    mnist_model: TorchClassifier, mnist_xy: tuple[Tensor, Tensor]
) -> None:
    x, y = mnist_xy[0][:100], mnist_xy[1][:100]
    before = mnist_model.queries.snapshot()
    result = Square(max_queries=1000, p_init=0.8)(restrict(mnist_model, "scores"), x, y, norm="linf", eps=0.3, seed=0)
    assert result.success_rate >= 0.9
    assert int(result.queries.max()) <= 1000
    assert int(result.queries.sum()) == spent(mnist_model, before)
    assert int(result.gradients.sum()) == 0
    assert float(result.distance.max()) <= 0.3 + 1e-5


def test_l2_eps_4_fools_most_within_1000_queries(mnist_model: TorchClassifier, mnist_xy: tuple[Tensor, Tensor]) -> None:
    x, y = mnist_xy[0][:50], mnist_xy[1][:50]
    before = mnist_model.queries.snapshot()
    result = Square(max_queries=1000, p_init=0.8)(restrict(mnist_model, "scores"), x, y, norm="l2", eps=4.0, seed=0)
    # measured 0.88-0.96 depending on the demo model's training run; white-box PGD L2 at eps 3: 0.97
    assert result.success_rate >= 0.8
    assert int(result.queries.max()) <= 1000
    assert int(result.queries.sum()) == spent(mnist_model, before)
    assert float(result.distance.max()) <= 4.0 + 1e-4


@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("budget", [3, 4, 17])
def test_budget_is_never_exceeded(
    mnist_model: TorchClassifier, mnist_xy: tuple[Tensor, Tensor], norm: str, budget: int
) -> None:
    x, y = mnist_xy[0][:20], mnist_xy[1][:20]
    before = mnist_model.queries.snapshot()
    result = Square(max_queries=budget)(restrict(mnist_model, "scores"), x, y, norm=norm, eps=0.05, seed=1)
    assert int(result.queries.max()) == budget  # some example stays robust: it spends the whole budget
    assert int(result.queries.sum()) == spent(mnist_model, before)


def test_targeted_success_means_the_target(mnist_model: TorchClassifier, mnist_xy: tuple[Tensor, Tensor]) -> None:
    x, y = mnist_xy[0][:20], mnist_xy[1][:20]
    targets = (y + 1) % 10
    result = Square(max_queries=500, p_init=0.8)(
        restrict(mnist_model, "scores"), x, y, norm="linf", eps=0.3, targets=targets, seed=0
    )
    assert result.success_rate >= 0.5
    assert torch.equal(result.success, result.predictions == targets)


def test_p_schedule_halves_at_the_papers_checkpoints_rescaled() -> None:
    assert p_schedule(0.8, 0, 10_000) == 0.8
    assert p_schedule(0.8, 10, 10_000) == 0.8
    assert p_schedule(0.8, 11, 10_000) == 0.4
    assert p_schedule(0.8, 9_999, 10_000) == 0.8 / 512
    assert p_schedule(0.8, 2, 1_000) == 0.4  # 2 of 1000 is 20 of 10000


def test_bad_settings_are_refused(mnist_model: TorchClassifier, mnist_xy: tuple[Tensor, Tensor]) -> None:
    x, y = mnist_xy[0][:2], mnist_xy[1][:2]
    with pytest.raises(ConfigError, match="expected max_queries >= 3, got 2"):
        Square(max_queries=2)(mnist_model, x, y, eps=0.1)
    with pytest.raises(ConfigError, match="expected 0 < p_init <= 1, got 0"):
        Square(p_init=0)(mnist_model, x, y, eps=0.1)
    with pytest.raises(ConfigError, match="does not support the l1 norm"):
        Square()(mnist_model, x, y, norm="l1", eps=1.0)


def test_non_image_inputs_are_refused(linear_model: LinearFactory) -> None:
    model = linear_model(4, 3)
    with pytest.raises(ConfigError, match=r"square needs image inputs .* got \(4,\)"):
        Square()(model, torch.rand(2, 4), torch.zeros(2, dtype=torch.long), eps=0.1)


def test_labels_only_model_is_refused(mnist_model: TorchClassifier, mnist_xy: tuple[Tensor, Tensor]) -> None:
    with pytest.raises(ConfigError, match="square needs scores access; the model exposes only labels"):
        Square()(restrict(mnist_model, "labels"), mnist_xy[0][:2], mnist_xy[1][:2], eps=0.1)
