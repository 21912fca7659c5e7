"""The Boundary Attack on labels only: distances shrink with the budget, a linear boundary is found, exact budgets."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import Tensor

from bastion.attacks import BoundaryAttack
from bastion.attacks.blackbox.boundary import proposals
from bastion.attacks.interface import AttackResult
from bastion.errors import ConfigError
from bastion.models import TorchClassifier
from bastion.models.restricted import restrict

BinaryLinear = tuple[TorchClassifier, Tensor, Tensor, Tensor, Tensor]  # the conftest fixture: model, x, y, w, b


def attack_counted(
    attack: BoundaryAttack,
    model: TorchClassifier,
    x: Tensor,
    y: Tensor,
    *,
    targets: Tensor | None = None,
    seed: int = 0,
) -> tuple[AttackResult, int]:
    """The result on the label-only view of ``model``, and the forward rows the model counted meanwhile."""
    before = model.queries.forward
    result = attack(restrict(model, "labels"), x, y, norm="l2", targets=targets, seed=seed)
    return result, model.queries.forward - before


def check_budget(result: AttackResult, spent: int, max_queries: int) -> None:
    assert int(result.queries.sum()) == spent, "per-example queries do not add up to what the model counted"
    assert int(result.queries.max()) <= max_queries
    assert int(result.gradients.sum()) == 0


def test_median_distance_falls_over_the_budget(
    mnist_model: TorchClassifier, mnist_mixed: tuple[Tensor, Tensor]
) -> None:
    x, y = mnist_mixed[0][:10], mnist_mixed[1][:10]
    start, _ = attack_counted(BoundaryAttack(steps=1), mnist_model, x, y)
    result, spent = attack_counted(BoundaryAttack(max_queries=1000), mnist_model, x, y)
    check_budget(result, spent, 1000)
    assert start.success_rate >= 0.9 and result.success_rate >= 0.9
    # Measured: median 8.67 after the start's bisection and one step, 4.68 after 1000 queries (ratio 0.54).
    assert float(result.distance.median()) < 0.7 * float(start.distance.median())


def test_approaches_the_closest_point_of_a_linear_boundary(binary_linear: BinaryLinear) -> None:
    model, x, y, w, b = binary_linear
    exact = (x @ w + b).abs() / w.norm()
    result, spent = attack_counted(BoundaryAttack(max_queries=2000), model, x, y)
    check_budget(result, spent, 2000)
    assert bool(result.success.all())
    ratio = result.distance / exact
    # Never closer than the boundary; measured at 2000 queries: median 1.004, at most 1.034.
    assert float(ratio.min()) >= 1 - 1e-4
    assert float(ratio.median()) < 1.02
    assert float(ratio.max()) < 1.15


def test_proposals_lie_on_the_sphere_then_a_source_step_closer() -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.zeros(4, 3, 5)
    points = torch.randn(4, 3, 5, generator=gen) * 0.1  # far inside the bounds: no clipping
    spherical, source = torch.full((4,), 0.05), torch.full((4,), 0.01)
    orthogonal, candidate = proposals(x, points, spherical, source, gen, (-10.0, 10.0))
    r = points.flatten(1).norm(dim=1)
    torch.testing.assert_close(orthogonal.flatten(1).norm(dim=1), r)
    torch.testing.assert_close(candidate.flatten(1).norm(dim=1), (1 - source) * r)
    assert not torch.allclose(orthogonal, points)


@pytest.mark.parametrize("max_queries", [1, 2, 30, 150])
def test_queries_per_example_are_exact_and_within_the_budget(
    mnist_model: TorchClassifier, mnist_mixed: tuple[Tensor, Tensor], max_queries: int
) -> None:
    x, y = mnist_mixed[0][:6], mnist_mixed[1][:6]
    result, spent = attack_counted(BoundaryAttack(max_queries=max_queries), mnist_model, x, y)
    check_budget(result, spent, max_queries)
    if max_queries == 150:  # the walk spends every row it is given
        assert result.queries.tolist() == [150] * 6


def test_same_seed_same_result_other_seed_other_result(
    mnist_model: TorchClassifier, mnist_mixed: tuple[Tensor, Tensor]
) -> None:
    x, y = mnist_mixed[0][:6], mnist_mixed[1][:6]
    attack = BoundaryAttack(max_queries=200)
    first, _ = attack_counted(attack, mnist_model, x, y, seed=3)
    again, _ = attack_counted(attack, mnist_model, x, y, seed=3)
    other, _ = attack_counted(attack, mnist_model, x, y, seed=4)
    assert torch.equal(first.x_adv, again.x_adv) and torch.equal(first.queries, again.queries)
    assert not torch.equal(first.x_adv, other.x_adv)


def test_targeted_starts_from_a_batch_image_of_the_target_or_fails_cleanly(
    mnist_model: TorchClassifier, mnist_mixed: tuple[Tensor, Tensor]
) -> None:
    keep = mnist_mixed[1][:20] != 9  # two images of each class but 9
    x, y = mnist_mixed[0][:20][keep], mnist_mixed[1][:20][keep]
    targets = (y + 1) % 10  # the images of 8 ask for a 9, which the batch lacks
    result, spent = attack_counted(BoundaryAttack(max_queries=200), mnist_model, x, y, targets=targets)
    check_budget(result, spent, 200)
    hopeless = targets == 9
    assert torch.equal(result.predictions[~hopeless], targets[~hopeless])
    assert not bool(result.success[hopeless].any())
    assert torch.equal(result.x_adv[hopeless], x[hopeless])
    assert result.queries[hopeless].tolist() == [2, 2]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_queries": 0}, "expected max_queries >= 1, got 0"),
        ({"step_adaptation": 0.5}, "expected step_adaptation >= 1.0, got 0.5"),
        ({"update_every": 0}, "expected update_every >= 1, got 0"),
    ],
)
def test_bad_settings_are_refused(binary_linear: BinaryLinear, options: dict[str, Any], message: str) -> None:
    model, x, y, _, _ = binary_linear
    with pytest.raises(ConfigError, match=message):
        BoundaryAttack(**options)(restrict(model, "labels"), x, y, norm="l2")


def test_linf_is_refused(binary_linear: BinaryLinear) -> None:
    model, x, y, _, _ = binary_linear
    with pytest.raises(ConfigError, match="does not support the linf norm"):
        BoundaryAttack()(restrict(model, "labels"), x, y, norm="linf")
