"""Trust checks: named functions that flag an assessment whose numbers should not be believed.

After Carlini et al., "On Evaluating Adversarial Robustness", 2019 (https://arxiv.org/abs/1902.06705),
and the checks of AutoAttack (Croce & Hein 2020). Each returns a list of findings for the report.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from bastion.attacks.evasion.pgd import PGD
from bastion.errors import BudgetExhaustedError, RemoteModelError
from bastion.models.interface import Classifier, Knowledge, value_and_grad
from bastion.report.model import AttackRun, Finding

__all__ = [
    "black_box_beats_white_box",
    "low_clean_accuracy",
    "more_steps_weaker",
    "non_monotonic_epsilon",
    "probability_outputs",
    "randomised_outputs",
    "vanishing_gradients",
]


def low_clean_accuracy(clean_accuracy: float, num_classes: int, n: int) -> list[Finding]:
    """Robust accuracy means little when the model is barely better than chance on clean data."""
    chance = 1.0 / max(num_classes, 1)
    details = {"clean_accuracy": clean_accuracy, "chance": chance, "n_examples": n}
    if clean_accuracy < 1.5 * chance:
        msg = f"clean accuracy {clean_accuracy:.1%} is near chance ({chance:.1%}): robust figures mean nothing"
        return [Finding("low_clean_accuracy", "error", msg, details)]
    if clean_accuracy < 0.5:
        msg = f"clean accuracy {clean_accuracy:.1%} is low: robust figures are hard to interpret"
        return [Finding("low_clean_accuracy", "warning", msg, details)]
    return []


def randomised_outputs(model: Classifier, x: Tensor) -> list[Finding]:
    """Two identical calls must give identical outputs; randomness hides gradients (use EOT attacks)."""
    try:
        with torch.no_grad(), model.inference():
            a, b = model.logits(x), model.logits(x)
    except (BudgetExhaustedError, RemoteModelError) as exc:
        return [_skipped("randomised_outputs", exc)]
    gap = float((a - b).abs().max())
    scale = float(a.abs().max()) or 1.0
    if gap > 1e-4 * scale:
        msg = (
            f"the model's outputs change between identical calls (max difference {gap:.3g}): "
            "randomised defences defeat plain gradient attacks; the robust figures are upper bounds"
        )
        return [Finding("randomised_outputs", "error", msg, {"max_difference": gap})]
    return []


def probability_outputs(model: Classifier, x: Tensor) -> list[Finding]:
    """Softmax outputs instead of logits flatten the loss surface and weaken gradient attacks."""
    if model.knowledge is Knowledge.LABELS:
        return []  # a labels-only model answers with one-hot rows by protocol
    try:
        with torch.no_grad(), model.inference():
            out = model.logits(x)
    except (BudgetExhaustedError, RemoteModelError) as exc:
        return [_skipped("probability_outputs", exc)]
    sums = out.sum(dim=1)
    if bool((out >= 0).all()) and bool(torch.allclose(sums, torch.ones_like(sums), atol=1e-3)):
        msg = (
            "the model returns probabilities (rows are non-negative and sum to 1), not logits: "
            "saturated softmax gradients weaken attacks; expose the logits for a trustworthy assessment"
        )
        return [Finding("probability_outputs", "warning", msg, {})]
    return []


def _skipped(check: str, error: Exception) -> Finding:
    """A check that could not query the model (budget spent, endpoint failing): said, not hidden."""
    return Finding(check, "warning", f"check not run: {error}", {"skipped": True})


def vanishing_gradients(model: Classifier, x: Tensor, y: Tensor) -> list[Finding]:
    """Zero input gradients on many examples are the mark of gradient masking or saturation."""
    if model.knowledge is not Knowledge.WHITE_BOX or x.shape[0] == 0:
        return []
    with model.inference():
        _, _, grad = value_and_grad(model, x, lambda z: F.cross_entropy(z, y, reduction="none"))
    norms = grad.reshape(grad.shape[0], -1).norm(dim=1)
    share = float((norms <= 1e-12).float().mean())
    details = {"share_zero": share, "n_examples": int(x.shape[0])}
    if share > 0.5:
        return [Finding("vanishing_gradients", "error", f"{share:.0%} of inputs have zero gradient", details)]
    if share > 0.05:
        return [Finding("vanishing_gradients", "warning", f"{share:.0%} of inputs have zero gradient", details)]
    return []


def non_monotonic_epsilon(runs: Sequence[AttackRun]) -> list[Finding]:
    """Robust accuracy must not rise as the radius grows: a larger ball contains the smaller one."""
    findings = []
    by_attack: dict[str, list[AttackRun]] = {}
    for run in runs:
        by_attack.setdefault(run.attack, []).append(run)
    for attack, rows in by_attack.items():
        rows.sort(key=lambda r: r.eps)
        tolerance = 1.0 / max(rows[0].n_examples, 1) + 0.005
        for small, large in itertools.pairwise(rows):
            if large.robust_accuracy > small.robust_accuracy + tolerance:
                msg = (
                    f"{attack}: robust accuracy rises from {small.robust_accuracy:.1%} at eps {small.eps:g} "
                    f"to {large.robust_accuracy:.1%} at eps {large.eps:g}: the attack is not converging"
                )
                details = {"attack": attack, "eps": [small.eps, large.eps]}
                findings.append(Finding("non_monotonic_epsilon", "warning", msg, details))
    return findings


def more_steps_weaker(model: Classifier, x: Tensor, y: Tensor, norm: str, eps: float, seed: int) -> list[Finding]:
    """PGD with four times the steps must not be weaker: if it is, the loss surface is deceptive."""
    if model.knowledge is not Knowledge.WHITE_BOX or x.shape[0] == 0:
        return []
    few = PGD(steps=10, early_stop=True)(model, x, y, norm=norm, eps=eps, seed=seed)
    many = PGD(steps=40, early_stop=True)(model, x, y, norm=norm, eps=eps, seed=seed)
    robust_few = 1.0 - few.success_rate
    robust_many = 1.0 - many.success_rate
    details = {
        "eps": eps,
        "robust_10_steps": robust_few,
        "robust_40_steps": robust_many,
        "n": int(x.shape[0]),
    }
    if robust_many > robust_few + 2.0 / x.shape[0]:
        msg = (
            f"PGD with 40 steps leaves {robust_many:.1%} robust against {robust_few:.1%} with 10 steps "
            f"at eps {eps:g}: more steps should never help the model"
        )
        return [Finding("more_steps_weaker", "warning", msg, details)]
    return []


def black_box_beats_white_box(runs: Sequence[AttackRun], knowledge: Mapping[str, Knowledge]) -> list[Finding]:
    """A score- or decision-based attack stronger than every gradient attack points at gradient masking."""
    findings = []
    for eps in sorted({r.eps for r in runs if not math.isnan(r.eps)}):
        at = [r for r in runs if math.isclose(r.eps, eps)]
        white = [r.robust_accuracy for r in at if knowledge.get(r.attack) is Knowledge.WHITE_BOX]
        black = [r for r in at if knowledge.get(r.attack, Knowledge.WHITE_BOX) is not Knowledge.WHITE_BOX]
        if not white:
            continue
        for run in black:
            if run.robust_accuracy < min(white) - 1.0 / max(run.n_examples, 1):
                msg = (
                    f"black-box {run.attack} leaves {run.robust_accuracy:.1%} robust at eps {eps:g}, below "
                    f"every white-box attack ({min(white):.1%}): gradients are likely masked"
                )
                findings.append(Finding("black_box_beats_white_box", "error", msg, {"eps": eps}))
    return findings
