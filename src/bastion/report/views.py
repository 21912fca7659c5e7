"""Plain views of an assessment that several writers share: number formats and the accuracy table."""

from __future__ import annotations

from dataclasses import dataclass

from bastion.report.model import Assessment, Finding, Threshold

__all__ = [
    "AccuracyRow",
    "accuracy_table",
    "class_columns",
    "describe_threshold",
    "epsilons",
    "key_label",
    "number",
    "percent",
    "sorted_findings",
]

# Most severe first, so errors lead every list of findings.
SEVERITY_ORDER = {"error": 0, "warning": 1, "info": 2}

MISSING = "–"


@dataclass(frozen=True)
class AccuracyRow:
    """One line of the robust-accuracy table: an attack (or the worst case) across the epsilons."""

    name: str
    accuracy: tuple[float | None, ...]  # aligned with epsilons(assessment); None where not run
    worst_case: bool = False


def percent(value: float | None) -> str:
    """A share as a percentage with one decimal, or a dash when absent."""
    return MISSING if value is None else f"{value:.1%}"


def number(value: float | None) -> str:
    """A figure in its shortest general form (``0.0313725``, ``12``), or a dash when absent."""
    return MISSING if value is None else f"{value:g}"


def epsilons(assessment: Assessment) -> tuple[float, ...]:
    """Every epsilon that an attack run or the worst case covers, ascending."""
    found = {run.eps for run in assessment.runs} | {case.eps for case in assessment.worst_case}
    return tuple(sorted(found))


def accuracy_table(assessment: Assessment) -> tuple[AccuracyRow, ...]:
    """Robust accuracy per attack and epsilon, in first-run order, then the worst-case row."""
    columns = epsilons(assessment)
    by_attack: dict[str, dict[float, float]] = {}
    for run in assessment.runs:
        by_attack.setdefault(run.attack, {})[run.eps] = run.robust_accuracy
    rows = [AccuracyRow(name, tuple(cells.get(eps) for eps in columns)) for name, cells in by_attack.items()]
    if assessment.worst_case:
        worst = {case.eps: case.robust_accuracy for case in assessment.worst_case}
        rows.append(AccuracyRow("worst case", tuple(worst.get(eps) for eps in columns), worst_case=True))
    return tuple(rows)


def class_columns(assessment: Assessment) -> tuple[str, ...]:
    """The epsilon keys of the per-class table, in the order they first appear."""
    keys: dict[str, None] = {}
    for row in assessment.per_class:
        keys.update(dict.fromkeys(row.robust_accuracy))
    return tuple(keys)


def key_label(key: str) -> str:
    """A per-class ``str(eps)`` key shown like the other epsilons (``0.0313725``)."""
    try:
        return f"{float(key):g}"
    except ValueError:
        return key


def sorted_findings(assessment: Assessment) -> tuple[Finding, ...]:
    """Findings, errors first, then warnings, then information; stable within a severity."""
    return tuple(sorted(assessment.findings, key=lambda f: SEVERITY_ORDER.get(f.severity, len(SEVERITY_ORDER))))


def describe_threshold(threshold: Threshold) -> str:
    """``robust_accuracy at eps=0.1: required >= 0.5, actual 0.42``."""
    where = "" if threshold.eps is None else f" at eps={threshold.eps:g}"
    return f"{threshold.metric}{where}: required >= {threshold.required:g}, actual {threshold.actual:g}"
