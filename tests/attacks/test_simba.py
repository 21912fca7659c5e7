"""SimBA on the MNIST demo CNN seen through its scores only: probabilities drop, budgets hold."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import Tensor

from bastion.attacks import SimBA
from bastion.attacks.blackbox.simba import dct_basis, log_odds
from bastion.errors import ConfigError
from bastion.models import TorchClassifier, restrict

LinearFactory = Callable[..., TorchClassifier]


def true_class_probability(model: TorchClassifier, x: Tensor, y: Tensor) -> Tensor:
    """As log-odds: a confident model's 1 - 1e-9 is exactly 1.0 in float32."""
    with torch.no_grad():
        return log_odds(model.module(x), y)


def test_pixel_walk_lowers_the_true_class_probability(
    mnist_model: TorchClassifier, mnist_xy: tuple[Tensor, Tensor]
) -> None:
    x, y = mnist_xy[0][:20], mnist_xy[1][:20]
    result = SimBA(step=0.5, max_queries=200)(restrict(mnist_model, "scores"), x, y, norm="l2", eps=4.0, seed=0)
    before, after = true_class_probability(mnist_model, x, y), true_class_probability(mnist_model, result.x_adv, y)
    assert bool((after <= before).all())
    assert float((after < before).float().mean()) >= 0.9
    assert float(result.distance.max()) <= 4.0 + 1e-5


def test_dct_walk_fools_most_examples_at_l2_eps_6(
    mnist_model: TorchClassifier, mnist_xy: tuple[Tensor, Tensor]
) -> None:
    x, y = mnist_xy[0][:50], mnist_xy[1][:50]
    before = mnist_model.queries.forward
    attack = SimBA(basis="dct", low_frequencies=0.5, step=1.0, max_queries=1000)
    result = attack(restrict(mnist_model, "scores"), x, y, norm="l2", eps=6.0, seed=0)
    assert result.success_rate >= 0.7  # measured 0.80 (pixel basis, step 0.5: 0.82 with 4x the queries)
    assert int(result.queries.sum()) == mnist_model.queries.forward - before
    assert int(result.queries.max()) <= 1000
    assert float(result.distance.max()) <= 6.0 + 1e-5


@pytest.mark.parametrize("basis", ["pixel", "dct"])
@pytest.mark.parametrize("budget", [2, 3, 25])
def test_budget_is_never_exceeded(
    mnist_model: TorchClassifier, mnist_xy: tuple[Tensor, Tensor], basis: str, budget: int
) -> None:
    x, y = mnist_xy[0][:10], mnist_xy[1][:10]
    before = mnist_model.queries.forward
    attack = SimBA(basis=basis, max_queries=budget)  # type: ignore[arg-type]
    result = attack(restrict(mnist_model, "scores"), x, y, norm="l2", eps=2.0, seed=0)
    assert int(result.queries.max()) == budget
    assert int(result.queries.sum()) == mnist_model.queries.forward - before


def test_targeted_walk_raises_the_target(mnist_model: TorchClassifier, mnist_xy: tuple[Tensor, Tensor]) -> None:
    x, y = mnist_xy[0][:10], mnist_xy[1][:10]
    targets = (y + 1) % 10
    attack = SimBA(basis="dct", low_frequencies=0.5, step=1.0, max_queries=300)
    result = attack(restrict(mnist_model, "scores"), x, y, norm="l2", eps=6.0, targets=targets, seed=0)
    before, after = (true_class_probability(mnist_model, z, targets) for z in (x, result.x_adv))
    assert bool((after >= before).all()) and float((after > before).float().mean()) >= 0.9
    assert torch.equal(result.success, result.predictions == targets)


def test_log_odds_of_logits_and_of_probabilities_agree() -> None:
    logits = torch.tensor([[2.0, -1.0, 0.5], [0.0, 0.0, 3.0], [40.0, 0.0, 0.0]])
    label = torch.tensor([0, 2, 0])
    p = logits.double().softmax(dim=1).gather(1, label[:, None]).squeeze(1)
    expected = (p / (1 - p)).log().float()
    torch.testing.assert_close(log_odds(logits[:2], label[:2]), expected[:2])
    torch.testing.assert_close(log_odds(logits.softmax(dim=1)[:2], label[:2]), expected[:2])
    assert float(log_odds(logits, label)[2]) == pytest.approx(40.0 - torch.tensor(2.0).log().item())  # no saturation


def test_dct_basis_is_orthonormal() -> None:
    basis = dct_basis(7, torch.zeros(1))
    torch.testing.assert_close(basis @ basis.T, torch.eye(7), atol=1e-5, rtol=0)


def test_bad_settings_are_refused(
    mnist_model: TorchClassifier, mnist_xy: tuple[Tensor, Tensor], linear_model: LinearFactory
) -> None:
    x, y = mnist_xy[0][:2], mnist_xy[1][:2]
    with pytest.raises(ConfigError, match="does not support the linf norm"):
        SimBA()(mnist_model, x, y, norm="linf", eps=0.1)
    with pytest.raises(ConfigError, match="expected step > 0, got 0"):
        SimBA(step=0)(mnist_model, x, y, norm="l2", eps=1.0)
    with pytest.raises(ConfigError, match="unknown basis 'wavelet': expected one of pixel, dct"):
        SimBA(basis="wavelet")(mnist_model, x, y, norm="l2", eps=1.0)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"the dct basis needs image inputs .* got \(4,\)"):
        SimBA(basis="dct")(linear_model(4, 3), torch.rand(2, 4), torch.zeros(2, dtype=torch.long), norm="l2", eps=1.0)


def test_pixel_basis_works_on_tabular_inputs(linear_model: LinearFactory) -> None:
    model = linear_model(4, 3)
    x = torch.rand(8, 4, generator=torch.Generator().manual_seed(0))
    y = model.logits(x).argmax(dim=1)
    result = SimBA(step=0.5, max_queries=20)(restrict(model, "scores"), x, y, norm="l2", eps=1.0, seed=0)
    assert int(result.queries.max()) <= 20 and float(result.distance.max()) <= 1.0 + 1e-5
