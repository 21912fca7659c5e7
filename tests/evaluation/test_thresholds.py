"""--fail-under requirements: parsing, errors, and judging."""

from __future__ import annotations

import pytest

from bastion.errors import ConfigError
from bastion.evaluation.thresholds import Requirement, check_epsilons, judge, parse_requirement
from bastion.report.model import WorstCase


def test_parse_robust_and_clean() -> None:
    assert parse_requirement("robust_accuracy@0.1=0.8") == Requirement("robust_accuracy", 0.1, 0.8)
    assert parse_requirement("clean_accuracy=95%") == Requirement("clean_accuracy", None, 0.95)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("robust_accuracy@0.1", r"expected METRIC\[@EPS\]=MIN"),
        ("precision=0.5", r"unknown metric 'precision'"),
        ("robust_accuracy=0.5", r"robust_accuracy needs an epsilon"),
        ("clean_accuracy=1.5", r"between 0 and 1"),
        ("robust_accuracy@x=0.5", r"expected a number, got 'x'"),
        ("clean_accuracy=nan", r"expected a finite number"),
    ],
)
def test_parse_errors(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_requirement(text)


def test_unknown_epsilon_is_refused_before_running() -> None:
    with pytest.raises(ConfigError, match=r"eps 0.2 is not among the assessed epsilons \(0.1, 0.3\)"):
        check_epsilons([Requirement("robust_accuracy", 0.2, 0.5)], [0.1, 0.3])


def test_judge_compares_with_the_worst_case() -> None:
    worst = (WorstCase(0.1, 0.7, {}), WorstCase(0.3, 0.1, {}))
    reqs = [Requirement("robust_accuracy", 0.1, 0.6), Requirement("robust_accuracy", 0.3, 0.2)]
    passed, missed = judge(reqs, 0.99, worst)
    assert passed.passed and passed.actual == 0.7
    assert not missed.passed and missed.actual == 0.1
    (clean,) = judge([Requirement("clean_accuracy", None, 0.995)], 0.99, worst)
    assert not clean.passed
