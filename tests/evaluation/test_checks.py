"""Each trust check fires on a model built to trip it, and stays quiet on an honest one."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from bastion.evaluation import checks
from bastion.models import Knowledge, TorchClassifier
from bastion.report.model import AttackRun


class Noisy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 3)

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.linear(x) + torch.randn(x.shape[0], 3)
        return out


class Stepped(nn.Module):
    """Quantises its input: the gradient is zero almost everywhere."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 3)

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.linear(torch.round(x * 4) / 4)
        return out


def _wrap(module: nn.Module) -> TorchClassifier:
    torch.manual_seed(0)
    return TorchClassifier(module, input_shape=(4,), num_classes=3)


def _x() -> Tensor:
    return torch.rand(32, 4, generator=torch.Generator().manual_seed(1))


def test_randomised_outputs_flagged() -> None:
    (finding,) = checks.randomised_outputs(_wrap(Noisy()), _x())
    assert finding.check == "randomised_outputs" and finding.severity == "error"
    assert checks.randomised_outputs(_wrap(nn.Linear(4, 3)), _x()) == []


def test_probability_outputs_flagged() -> None:
    (finding,) = checks.probability_outputs(_wrap(nn.Sequential(nn.Linear(4, 3), nn.Softmax(dim=1))), _x())
    assert finding.check == "probability_outputs"
    assert checks.probability_outputs(_wrap(nn.Linear(4, 3)), _x()) == []


def test_vanishing_gradients_flagged() -> None:
    y = torch.zeros(32, dtype=torch.long)
    (finding,) = checks.vanishing_gradients(_wrap(Stepped()), _x(), y)
    assert finding.severity == "error" and finding.details["share_zero"] == 1.0
    assert checks.vanishing_gradients(_wrap(nn.Linear(4, 3)), _x(), y) == []


def _run(attack: str, eps: float, robust: float) -> AttackRun:
    return AttackRun(attack, "linf", eps, 100, robust, 1 - robust, None, 1.0, 1, 0, 0.0)


def test_non_monotonic_epsilon_flagged_beyond_noise() -> None:
    runs = [_run("pgd", 0.1, 0.40), _run("pgd", 0.2, 0.50), _run("fgsm", 0.1, 0.5), _run("fgsm", 0.2, 0.505)]
    (finding,) = checks.non_monotonic_epsilon(runs)
    assert finding.details["attack"] == "pgd" and finding.details["eps"] == [0.1, 0.2]


def test_black_box_beating_white_box_flagged() -> None:
    runs = [_run("pgd", 0.1, 0.6), _run("square", 0.1, 0.3), _run("pgd", 0.3, 0.1), _run("square", 0.3, 0.1)]
    knowledge = {"pgd": Knowledge.WHITE_BOX, "square": Knowledge.SCORES}
    (finding,) = checks.black_box_beats_white_box(runs, knowledge)
    assert finding.details["eps"] == 0.1


def test_low_clean_accuracy_levels() -> None:
    assert checks.low_clean_accuracy(0.12, 10, 100)[0].severity == "error"
    assert checks.low_clean_accuracy(0.40, 10, 100)[0].severity == "warning"
    assert checks.low_clean_accuracy(0.95, 10, 100) == []


def test_more_steps_weaker_quiet_on_an_honest_model(digits_model: TorchClassifier, digits_data) -> None:  # type: ignore[no-untyped-def]
    assert checks.more_steps_weaker(digits_model, digits_data.x[:32], digits_data.y[:32], "linf", 0.1, 0) == []


def test_labels_only_model_is_not_flagged_as_probabilities() -> None:
    from bastion.models import restrict

    assert checks.probability_outputs(restrict(_wrap(nn.Linear(4, 3)), "labels"), _x()) == []
