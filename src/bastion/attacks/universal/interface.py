"""What a universal attack returns, and how its success is measured on held-out inputs."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from bastion.models.interface import Classifier, predict

__all__ = ["PatternSuccess", "UniversalResult", "fooling_rate", "pattern_success"]


@dataclass(frozen=True)
class UniversalResult:
    """The learned pattern (a patch ``(C, s, s)`` or a perturbation ``input_shape``) and its training figures."""

    attack: str
    pattern: Tensor
    train_success: float  # share of clean-correct training inputs it fools
    queries: int  # forward rows spent on the model while learning
    gradients: int  # backward rows
    elapsed: float

    @classmethod
    def measured(
        cls,
        attack: str,
        pattern: Tensor,
        train_success: float,
        model: Classifier,
        before: tuple[int, int],
        started: float,
    ) -> UniversalResult:
        """The result, with the queries spent since the counter read ``before`` and the time since ``started``."""
        fwd, bwd = model.queries.snapshot()
        return cls(attack, pattern, train_success, fwd - before[0], bwd - before[1], time.perf_counter() - started)


@dataclass(frozen=True)
class PatternSuccess:
    """How a universal pattern fares on a set of inputs (measured on the clean-correct ones)."""

    fooling_rate: float  # share of the clean-correct inputs it makes the model misclassify
    target_rate: float | None  # targeted: share of the clean-correct inputs of another class sent to the target
    correct: int  # clean-correct inputs, the denominator of fooling_rate


def pattern_success(
    model: Classifier,
    x: Tensor,
    y: Tensor,
    apply: Callable[[Tensor, torch.Generator], Tensor],
    *,
    target: int | None = None,
    seed: int = 0,
    batch_size: int = 500,
) -> PatternSuccess:
    """Fooling rate of ``apply`` on the inputs the model gets right, and with ``target`` how often it hits it."""
    gen = torch.Generator(device=model.device).manual_seed(seed)
    fooled = correct = hit = eligible = 0
    with model.inference():
        for start in range(0, x.shape[0], batch_size):
            xb = x[start : start + batch_size].to(model.device)
            yb = y[start : start + batch_size].to(model.device)
            ok = predict(model, xb) == yb
            adv = predict(model, apply(xb[ok], gen)) if bool(ok.any()) else yb[ok]
            fooled += int((adv != yb[ok]).sum())
            correct += int(ok.sum())
            if target is not None:
                other = yb[ok] != target
                hit += int((adv[other] == target).sum())
                eligible += int(other.sum())
    target_rate = None if target is None else (hit / eligible if eligible else 0.0)
    return PatternSuccess(fooled / correct if correct else 0.0, target_rate, correct)


def fooling_rate(
    model: Classifier,
    x: Tensor,
    y: Tensor,
    apply: Callable[[Tensor, torch.Generator], Tensor],
    *,
    seed: int = 0,
    batch_size: int = 500,
) -> float:
    """Share of the inputs the model classifies correctly that ``apply`` makes it misclassify."""
    return pattern_success(model, x, y, apply, seed=seed, batch_size=batch_size).fooling_rate
