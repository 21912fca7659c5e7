"""PGD on the undefended MNIST demo CNN, and its query accounting."""

from __future__ import annotations

import pytest
from torch import Tensor

from bastion.attacks import PGD
from bastion.errors import ConfigError
from bastion.models import TorchClassifier


def test_pgd40_at_eps_03_leaves_under_5_percent_accuracy(
    mnist_model: TorchClassifier, mnist_xy: tuple[Tensor, Tensor]
) -> None:
    x, y = mnist_xy
    result = PGD(steps=40, step_size=0.01, early_stop=True)(mnist_model, x, y, norm="linf", eps=0.3, seed=0)
    robust_accuracy = 1.0 - result.success_rate
    assert robust_accuracy < 0.05
    assert float(result.distance.max()) <= 0.3 + 1e-5


def test_queries_are_charged_per_example(mnist_model: TorchClassifier, mnist_xy: tuple[Tensor, Tensor]) -> None:
    x, y = mnist_xy[0][:32], mnist_xy[1][:32]
    before = mnist_model.queries.snapshot()
    result = PGD(steps=5, restarts=2, early_stop=True)(mnist_model, x, y, norm="l2", eps=1.0, seed=0)
    forward, backward = (a - b for a, b in zip(mnist_model.queries.snapshot(), before, strict=True))
    assert int(result.queries.sum()) == forward
    assert int(result.gradients.sum()) == backward


def test_pgd_needs_an_epsilon(mnist_model: TorchClassifier, mnist_xy: tuple[Tensor, Tensor]) -> None:
    with pytest.raises(ConfigError, match="pgd needs an epsilon"):
        PGD()(mnist_model, *mnist_xy, norm="linf")
