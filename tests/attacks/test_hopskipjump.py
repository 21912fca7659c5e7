"""HopSkipJump on labels only: distances shrink with the budget, a linear boundary is found, the budget is exact."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import Tensor

from bastion.attacks import HopSkipJump
from bastion.attacks.interface import AttackResult
from bastion.errors import ConfigError
from bastion.models import TorchClassifier
from bastion.models.restricted import restrict

BinaryLinear = tuple[TorchClassifier, Tensor, Tensor, Tensor, Tensor]  # the conftest fixture: model, x, y, w, b

# Enough for the start and its bisection (~20 rows), not for the first gradient estimate (101 rows).
INIT_ONLY = 100


def attack_counted(
    attack: HopSkipJump,
    model: TorchClassifier,
    x: Tensor,
    y: Tensor,
    *,
    norm: str,
    targets: Tensor | None = None,
    seed: int = 0,
) -> tuple[AttackResult, int]:
    """The result on the label-only view of ``model``, and the forward rows the model counted meanwhile."""
    before = model.queries.forward
    result = attack(restrict(model, "labels"), x, y, norm=norm, targets=targets, seed=seed)
    return result, model.queries.forward - before


def check_budget(result: AttackResult, spent: int, max_queries: int) -> None:
    assert int(result.queries.sum()) == spent, "per-example queries do not add up to what the model counted"
    assert int(result.queries.max()) <= max_queries
    assert int(result.gradients.sum()) == 0


def test_l2_distance_falls_well_below_the_start_within_1000_queries(
    mnist_model: TorchClassifier, mnist_mixed: tuple[Tensor, Tensor]
) -> None:
    x, y = mnist_mixed[0][:20], mnist_mixed[1][:20]
    start, spent_start = attack_counted(HopSkipJump(max_queries=INIT_ONLY), mnist_model, x, y, norm="l2")
    result, spent = attack_counted(HopSkipJump(max_queries=1000), mnist_model, x, y, norm="l2")
    check_budget(start, spent_start, INIT_ONLY)
    check_budget(result, spent, 1000)
    assert start.success_rate >= 0.9 and result.success_rate >= 0.9
    # Measured: median 8.98 from the start, 3.18 after 1000 queries (ratio 0.35).
    assert float(result.distance.median()) < 0.5 * float(start.distance.median())


@pytest.mark.slow
def test_l2_and_linf_keep_improving_up_to_5000_queries(
    mnist_model: TorchClassifier, mnist_mixed: tuple[Tensor, Tensor]
) -> None:
    # ~4 minutes on one CPU core: 50 images x (1000 + 5000) queries, for each norm.
    x, y = mnist_mixed[0][:50], mnist_mixed[1][:50]
    # Measured, medians from the start / after 1000 / after 5000 queries: l2 9.20 / 3.13 / 2.25 (ratios 0.34, 0.72),
    # linf 0.386 / 0.242 / 0.180 (ratios 0.63, 0.74).
    for norm, first, later in [("l2", 0.45, 0.85), ("linf", 0.75, 0.85)]:
        start, _ = attack_counted(HopSkipJump(max_queries=INIT_ONLY), mnist_model, x, y, norm=norm)
        short, _ = attack_counted(HopSkipJump(max_queries=1000), mnist_model, x, y, norm=norm)
        long, spent = attack_counted(HopSkipJump(max_queries=5000), mnist_model, x, y, norm=norm)
        check_budget(long, spent, 5000)
        assert long.success_rate >= 0.9
        assert float(short.distance.median()) < first * float(start.distance.median())
        assert float(long.distance.median()) < later * float(short.distance.median())


def test_linf_distance_falls_within_1000_queries(
    mnist_model: TorchClassifier, mnist_mixed: tuple[Tensor, Tensor]
) -> None:
    x, y = mnist_mixed[0][:10], mnist_mixed[1][:10]
    start, _ = attack_counted(HopSkipJump(max_queries=INIT_ONLY), mnist_model, x, y, norm="linf")
    result, spent = attack_counted(HopSkipJump(max_queries=1000), mnist_model, x, y, norm="linf")
    check_budget(result, spent, 1000)
    assert result.success_rate >= 0.9
    # Measured: median 0.348 from the start, 0.208 after 1000 queries (ratio 0.60).
    assert float(result.distance.median()) < 0.75 * float(start.distance.median())


@pytest.mark.parametrize(("norm", "dual", "tolerance"), [("l2", 2.0, 1.05), ("linf", 1.0, 1.1)])
def test_approaches_the_closest_point_of_a_linear_boundary(
    binary_linear: BinaryLinear, norm: str, dual: float, tolerance: float
) -> None:
    model, x, y, w, b = binary_linear
    exact = (x @ w + b).abs() / torch.linalg.vector_norm(w, ord=dual)
    result, spent = attack_counted(HopSkipJump(max_queries=3000), model, x, y, norm=norm)
    check_budget(result, spent, 3000)
    assert bool(result.success.all())
    ratio = result.distance / exact
    # Never closer than the boundary; measured at 3000 queries: at most 1.023 (l2), 1.038 (linf).
    assert float(ratio.min()) >= 1 - 1e-4
    assert float(ratio.max()) < tolerance


@pytest.mark.parametrize("max_queries", [1, 2, 25, 150, 333])
def test_queries_per_example_are_exact_and_within_the_budget(
    mnist_model: TorchClassifier, mnist_mixed: tuple[Tensor, Tensor], max_queries: int
) -> None:
    x, y = mnist_mixed[0][:6], mnist_mixed[1][:6]
    result, spent = attack_counted(HopSkipJump(max_queries=max_queries), mnist_model, x, y, norm="l2")
    check_budget(result, spent, max_queries)
    if max_queries == 1:  # the final check is all there is
        assert result.queries.tolist() == [1] * 6 and not bool(result.success.any())


def test_same_seed_same_result_other_seed_other_result(
    mnist_model: TorchClassifier, mnist_mixed: tuple[Tensor, Tensor]
) -> None:
    x, y = mnist_mixed[0][:6], mnist_mixed[1][:6]
    attack = HopSkipJump(max_queries=300)
    first, _ = attack_counted(attack, mnist_model, x, y, norm="linf", seed=3)
    again, _ = attack_counted(attack, mnist_model, x, y, norm="linf", seed=3)
    other, _ = attack_counted(attack, mnist_model, x, y, norm="linf", seed=4)
    assert torch.equal(first.x_adv, again.x_adv) and torch.equal(first.queries, again.queries)
    assert not torch.equal(first.x_adv, other.x_adv)


def test_targeted_starts_from_a_batch_image_of_the_target_or_fails_cleanly(
    mnist_model: TorchClassifier, mnist_mixed: tuple[Tensor, Tensor]
) -> None:
    keep = mnist_mixed[1][:20] != 9  # two images of each class but 9
    x, y = mnist_mixed[0][:20][keep], mnist_mixed[1][:20][keep]
    targets = (y + 1) % 10  # the images of 8 ask for a 9, which the batch lacks
    result, spent = attack_counted(HopSkipJump(max_queries=400), mnist_model, x, y, norm="l2", targets=targets)
    check_budget(result, spent, 400)
    hopeless = targets == 9
    assert bool(result.success[~hopeless].all())
    assert torch.equal(result.predictions[~hopeless], targets[~hopeless])
    # Without a start the example is returned unchanged, having cost only the clean check and the final one.
    assert not bool(result.success[hopeless].any())
    assert torch.equal(result.x_adv[hopeless], x[hopeless])
    assert result.queries[hopeless].tolist() == [2, 2]


def test_already_misclassified_examples_stay_put(binary_linear: BinaryLinear) -> None:
    model, x, y, _, _ = binary_linear
    result, _ = attack_counted(HopSkipJump(max_queries=500), model, x, 1 - y, norm="l2")
    assert bool(result.success.all())
    assert torch.equal(result.x_adv, x) and result.queries.tolist() == [2] * len(y)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_queries": 0}, "expected max_queries >= 1, got 0"),
        ({"initial_evals": 0}, "expected initial_evals >= 1, got 0"),
        ({"gamma": 0.0}, "expected gamma >= 1e-12, got 0.0"),
    ],
)
def test_bad_settings_are_refused(binary_linear: BinaryLinear, options: dict[str, Any], message: str) -> None:
    model, x, y, _, _ = binary_linear
    with pytest.raises(ConfigError, match=message):
        HopSkipJump(**options)(restrict(model, "labels"), x, y, norm="l2")


def test_l1_is_refused(binary_linear: BinaryLinear) -> None:
    model, x, y, _, _ = binary_linear
    with pytest.raises(ConfigError, match="does not support the l1 norm"):
        HopSkipJump()(restrict(model, "labels"), x, y, norm="l1")
