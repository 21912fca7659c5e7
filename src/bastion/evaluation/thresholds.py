"""``--fail-under`` requirements: parse ``robust_accuracy@0.1=0.8`` or ``clean_accuracy=0.95``, then judge them."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from bastion.errors import ConfigError
from bastion.report.model import Threshold, WorstCase

__all__ = ["METRICS", "Requirement", "check_epsilons", "judge", "parse_requirement"]

METRICS = ("clean_accuracy", "robust_accuracy")


@dataclass(frozen=True)
class Requirement:
    """The assessment fails unless ``metric`` (at ``eps``, for robust accuracy) is at least ``minimum``."""

    metric: str
    eps: float | None
    minimum: float


def parse_requirement(text: str) -> Requirement:
    """Parse ``METRIC[@EPS]=MIN``; accuracies are fractions in [0, 1] (a trailing % is accepted)."""
    name, sep, value = text.partition("=")
    if not sep:
        raise ConfigError(f"expected METRIC[@EPS]=MIN such as robust_accuracy@0.1=0.8, got {text!r}")
    metric, _, eps_text = name.strip().partition("@")
    if metric not in METRICS:
        raise ConfigError(f"unknown metric {metric!r} in {text!r}: expected one of {', '.join(METRICS)}")
    minimum = _number(value.strip().rstrip("%"), text) / (100.0 if value.strip().endswith("%") else 1.0)
    if not 0.0 <= minimum <= 1.0:
        raise ConfigError(f"expected a minimum accuracy between 0 and 1 in {text!r}, got {minimum}")
    if metric == "robust_accuracy" and not eps_text:
        raise ConfigError(f"robust_accuracy needs an epsilon: robust_accuracy@EPS=MIN, got {text!r}")
    eps = _number(eps_text, text) if eps_text else None
    return Requirement(metric, eps, minimum)


def _number(text: str, whole: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"expected a number, got {text!r} in {whole!r}") from None
    if not math.isfinite(value):
        raise ConfigError(f"expected a finite number, got {text!r} in {whole!r}")
    return value


def check_epsilons(requirements: Sequence[Requirement], epsilons: Sequence[float]) -> None:
    """Every robust-accuracy requirement must name an epsilon the plan attacks at."""
    for req in requirements:
        if req.eps is not None and not any(math.isclose(req.eps, e) for e in epsilons):
            listed = ", ".join(f"{e:g}" for e in epsilons)
            raise ConfigError(f"threshold at eps {req.eps:g} is not among the assessed epsilons ({listed})")


def judge(
    requirements: Sequence[Requirement], clean_accuracy: float, worst: Sequence[WorstCase]
) -> tuple[Threshold, ...]:
    out = []
    for req in requirements:
        if req.metric == "clean_accuracy":
            actual = clean_accuracy
        else:
            actual = next(w.robust_accuracy for w in worst if req.eps is not None and math.isclose(w.eps, req.eps))
        out.append(Threshold(req.metric, req.eps, req.minimum, actual, actual >= req.minimum))
    return tuple(out)
