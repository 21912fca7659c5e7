"""APGD and APGD-T: the checkpoint schedule, known answers on a linear model, strength against PGD, accounting."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from bastion.attacks import APGD, APGDT, PGD, AttackResult, Ledger, make_attack
from bastion.attacks.evasion.apgd import _OBJECTIVES, _Core, _Goal, _Run, checkpoints
from bastion.errors import ConfigError
from bastion.models import TorchClassifier
from bastion.norms import get_norm

BinaryLinear = tuple[TorchClassifier, Tensor, Tensor, Tensor, Tensor]  # the conftest fixture: model, x, y, w, b


def _delta(model: TorchClassifier, before: tuple[int, int]) -> tuple[int, int]:
    return model.queries.forward - before[0], model.queries.backward - before[1]


def _linear(num_classes: int) -> TorchClassifier:
    torch.manual_seed(0)
    return TorchClassifier(nn.Sequential(nn.Linear(6, num_classes)).eval(), input_shape=(6,), bounds=(-1.0, 1.0))


def test_checkpoints_follow_the_papers_schedule() -> None:
    # p = 0, 0.22, 0.41, 0.57, 0.70, 0.80, 0.87, 0.93, 0.99, (1.05): w_j = ceil(p_j * N_iter).
    assert checkpoints(100) == [22, 41, 57, 70, 80, 87, 93, 99]
    assert checkpoints(10) == [3, 5, 6, 7, 8, 9, 10]
    assert checkpoints(1) == [1]


def test_checkpoint_halves_where_the_loss_oscillated_or_stalled(binary_linear: BinaryLinear) -> None:
    model, x, y, _, _ = binary_linear
    core = _Core(get_norm("linf"), 0.1, model.bounds, steps=10, rho=0.75, early_stop=False)
    goal, ledger = _Goal(_OBJECTIVES["ce"], hit_target=False), Ledger(3, x.device)
    run = _Run.start(core, model, goal, x[:3], y[:3], None, torch.arange(3), torch.Generator(), ledger)
    run.x_max = run.x_adv + 0.01  # stands for the best iterate so far
    # Of 4 steps, 4 / 2 / 4 raised the loss (2 < 0.75 * 4: condition 1); example 2's best loss never moved.
    run.ups, run.loss_max = torch.tensor([4, 2, 4]), run.check_loss + torch.tensor([1.0, 1.0, 0.0])
    run.checkpoint(rho=0.75, span=4)
    assert run.step.tolist() == pytest.approx([0.2, 0.1, 0.1])
    assert torch.equal(run.x_adv[1:], run.x_max[1:]) and not torch.equal(run.x_adv[0], run.x_max[0])
    # Nothing improves: condition 2 now halves example 0 only, as 1 and 2 were just halved.
    run.ups = torch.tensor([4, 4, 4])
    run.checkpoint(rho=0.75, span=4)
    assert run.step.tolist() == pytest.approx([0.1, 0.1, 0.1])


@pytest.mark.parametrize(("norm", "dual"), [("linf", 1.0), ("l2", 2.0)])
def test_linear_model_is_fooled_exactly_beyond_its_distance(
    binary_linear: BinaryLinear, norm: str, dual: float
) -> None:
    # On a linear model the label flips at |w.x + b| / ||w||_q (q the dual norm); APGD must find every
    # such point inside the ball, and none can exist outside it.
    model, x, y, w, b = binary_linear
    eps = 0.1
    distance = (x @ w + b).abs() / torch.linalg.vector_norm(w, ord=dual)
    clear = (distance - eps).abs() > 0.02 * eps  # leave out the examples right at the edge of the ball
    result = APGD(steps=20)(model, x, y, norm=norm, eps=eps, seed=0)
    assert int(clear.sum()) > 50 and 0 < int((distance < eps).sum()) < len(y)
    assert torch.equal(result.success[clear], (distance < eps)[clear])


@pytest.fixture(scope="module")
def first_100(mnist_xy: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
    """100 MNIST test images: enough to tell the attacks apart (PGD leaves 78 robust, APGD 76) in a few seconds."""
    return mnist_xy[0][:100], mnist_xy[1][:100]


@pytest.fixture(scope="module")
def pgd_at_01(mnist_model: TorchClassifier, first_100: tuple[Tensor, Tensor]) -> AttackResult:
    return PGD(steps=40, step_size=0.01, early_stop=True)(mnist_model, *first_100, norm="linf", eps=0.1, seed=0)


def test_apgd_ce_is_at_least_as_strong_as_pgd(
    mnist_model: TorchClassifier, first_100: tuple[Tensor, Tensor], pgd_at_01: AttackResult
) -> None:
    result = APGD(loss="ce", early_stop=True)(mnist_model, *first_100, norm="linf", eps=0.1, seed=0)
    assert float(result.distance.max()) <= 0.1 + 1e-5
    assert 1.0 - result.success_rate <= 1.0 - pgd_at_01.success_rate


def test_apgd_t_is_at_least_as_strong_as_pgd(
    mnist_model: TorchClassifier, first_100: tuple[Tensor, Tensor], pgd_at_01: AttackResult
) -> None:
    attack = APGDT(n_target_classes=3, steps=50, early_stop=True)
    result = attack(mnist_model, *first_100, norm="linf", eps=0.1, seed=0)
    assert float(result.distance.max()) <= 0.1 + 1e-5
    assert 1.0 - result.success_rate <= 1.0 - pgd_at_01.success_rate


def test_each_attacked_example_costs_one_clean_forward_then_steps_plus_one_gradients(
    binary_linear: BinaryLinear,
) -> None:
    model, x, y, _, _ = binary_linear
    wrong = y.clone()
    wrong[:4] = 1 - wrong[:4]  # already misclassified: only the clean check and the final one
    result = APGD(steps=7)(model, x, wrong, norm="l2", eps=0.01, seed=0)
    assert result.queries[:4].tolist() == [2] * 4 and result.gradients[:4].tolist() == [0] * 4
    assert result.queries[4:].tolist() == [1 + 8 + 1] * (len(y) - 4)
    assert result.gradients[4:].tolist() == [8] * (len(y) - 4)
    assert bool(result.success[:4].all()) and torch.equal(result.x_adv[:4], x[:4])


@pytest.mark.parametrize(
    "attack",
    [
        APGD(steps=6, restarts=3, early_stop=True),
        APGD(loss="dlr", steps=6, restarts=2),
        APGDT(n_target_classes=3, steps=6),
        APGDT(n_target_classes=2, steps=6, restarts=2, early_stop=True),
    ],
    ids=["ce-restarts-early-stop", "dlr-restarts", "t", "t-restarts-early-stop"],
)
def test_query_counts_match_the_model(
    mnist_model: TorchClassifier, mnist_xy: tuple[Tensor, Tensor], attack: APGD | APGDT
) -> None:
    x, y = mnist_xy[0][:48], mnist_xy[1][:48]
    before = mnist_model.queries.snapshot()
    result = attack(mnist_model, x, y, norm="linf", eps=0.1, seed=0)
    assert (int(result.queries.sum()), int(result.gradients.sum())) == _delta(mnist_model, before)


def test_user_targets_are_hit_or_missed_as_reported(
    mnist_model: TorchClassifier, mnist_xy: tuple[Tensor, Tensor]
) -> None:
    x, y = mnist_xy[0][:32], mnist_xy[1][:32]
    targets = (y + 1) % 10
    for attack in (APGD(loss="ce", steps=20), APGD(loss="dlr", steps=20), APGDT(steps=20)):
        result = attack(mnist_model, x, y, norm="linf", eps=0.3, targets=targets, seed=0)
        assert torch.equal(result.success, result.predictions == targets)
        assert result.success_rate > 0.5


def test_same_seed_same_points_and_inputs_untouched(
    mnist_model: TorchClassifier, mnist_xy: tuple[Tensor, Tensor]
) -> None:
    x, y = mnist_xy[0][:16].clone(), mnist_xy[1][:16].clone()
    x0, y0 = x.clone(), y.clone()
    first = APGD(steps=5)(mnist_model, x, y, norm="l2", eps=1.0, seed=3)
    second = APGD(steps=5)(mnist_model, x, y, norm="l2", eps=1.0, seed=3)
    assert torch.equal(first.x_adv, second.x_adv)
    assert torch.equal(x, x0) and torch.equal(y, y0)
    assert float(first.distance.max()) <= 1.0 + 1e-5


def test_registry_names_and_losses() -> None:
    assert make_attack("apgd-ce") == APGD(loss="ce")
    assert make_attack("apgd-dlr", steps=10) == APGD(loss="dlr", steps=10)
    assert make_attack("apgd-t") == APGDT()
    assert [make_attack(n).name for n in ("apgd-ce", "apgd-dlr", "apgd-t")] == ["apgd-ce", "apgd-dlr", "apgd-t"]
    with pytest.raises(ConfigError, match="bad options for attack 'apgd-ce'"):
        make_attack("apgd-ce", loss="dlr")


@pytest.mark.parametrize(
    ("attack", "classes", "message"),
    [
        (APGD(loss="mse"), 3, "unknown loss 'mse': expected one of ce, dlr"),  # type: ignore[arg-type]
        (APGD(loss="dlr"), 2, "the DLR loss needs at least 3 classes, the model has 2"),
        (APGDT(), 3, "the targeted DLR loss needs at least 4 classes, the model has 3"),
        (APGD(steps=0), 3, "expected steps >= 1, got 0"),
        (APGD(restarts=0), 3, "expected restarts >= 1, got 0"),
        (APGD(rho=1.5), 3, r"expected 0 < rho <= 1, got 1.5"),
        (APGDT(n_target_classes=0), 4, "expected n_target_classes >= 1, got 0"),
    ],
)
def test_bad_settings_are_refused(attack: APGD | APGDT, classes: int, message: str) -> None:
    model = _linear(classes)
    with pytest.raises(ConfigError, match=message):
        attack(model, torch.zeros(2, 6), torch.zeros(2, dtype=torch.int64), norm="linf", eps=0.1)


def test_unsupported_norm_and_missing_eps_are_refused(binary_linear: BinaryLinear) -> None:
    model, x, y, _, _ = binary_linear
    with pytest.raises(ConfigError, match="apgd-ce does not support the l1 norm: expected one of linf, l2"):
        APGD()(model, x, y, norm="l1", eps=1.0)
    with pytest.raises(ConfigError, match="apgd-t needs an epsilon"):
        APGDT()(_linear(4), torch.zeros(2, 6), torch.zeros(2, dtype=torch.int64), norm="linf")
