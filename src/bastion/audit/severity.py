"""Severity levels of advisories: GitHub's labels and CVSS v3.x base scores, computed from the vector.

An advisory's severity arrives as GitHub's ``database_specific.severity`` label (``LOW``,
``MODERATE``, ``HIGH``, ``CRITICAL``) or as a CVSS vector from OSV's ``severity`` list. For CVSS
v3.0 and v3.1 vectors the base score is computed here from the base metrics, following the
CVSS v3.1 specification (FIRST, https://www.first.org/cvss/v3.1/specification-document, section
7.1 for the equations, appendix A for ``Roundup``) and mapped to its qualitative rating (section 5):
0.0 none, 0.1-3.9 low, 4.0-6.9 medium, 7.0-8.9 high, 9.0-10.0 critical. CVSS v4 scores come from
a lookup table of macro-vectors rather than an equation, so a v4 vector alone is ``unknown``.

``unknown`` is ranked as ``high``: a finding nobody rated fails ``--fail-on low|medium|high`` but
not ``--fail-on critical`` (see :func:`at_or_above`).
"""

from __future__ import annotations

import enum
import math

from bastion.errors import DataError

__all__ = ["Severity", "at_or_above", "cvss3_base_score", "severity_of"]


class Severity(str, enum.Enum):
    """A qualitative level; ``UNKNOWN`` when the advisory gives none Bastion can read."""

    NONE = "none"
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"
    UNKNOWN = "unknown"

    @property
    def rank(self) -> int:
        """Order for ``--fail-on``: none < low < medium < high = unknown < critical."""
        return _RANKS[self]


_RANKS = {
    Severity.NONE: 0,
    Severity.LOW: 1,
    Severity.MEDIUM: 2,
    Severity.HIGH: 3,
    Severity.UNKNOWN: 3,  # unrated is not safe: treated as high, documented in docs/audit.md
    Severity.CRITICAL: 4,
}
# GitHub's advisory database labels (MODERATE is its word for medium).
_LABELS = {
    "NONE": Severity.NONE,
    "LOW": Severity.LOW,
    "MODERATE": Severity.MEDIUM,
    "MEDIUM": Severity.MEDIUM,
    "HIGH": Severity.HIGH,
    "CRITICAL": Severity.CRITICAL,
}

# CVSS v3.1 base metric weights (specification section 7.4).
_AV = {"N": 0.85, "A": 0.62, "L": 0.55, "P": 0.2}
_AC = {"L": 0.77, "H": 0.44}
_PR_UNCHANGED = {"N": 0.85, "L": 0.62, "H": 0.27}
_PR_CHANGED = {"N": 0.85, "L": 0.68, "H": 0.5}
_UI = {"N": 0.85, "R": 0.62}
_CIA = {"H": 0.56, "L": 0.22, "N": 0.0}
_BASE_METRICS = ("AV", "AC", "PR", "UI", "S", "C", "I", "A")
_ALLOWED: dict[str, dict[str, float]] = {
    "AV": _AV,
    "AC": _AC,
    "PR": _PR_UNCHANGED,
    "UI": _UI,
    "S": {"U": 0.0, "C": 0.0},
    "C": _CIA,
    "I": _CIA,
    "A": _CIA,
}


def severity_of(text: str | None) -> Severity:
    """The level of a label (``HIGH``, ``MODERATE`` ...) or a CVSS v3.x vector; ``UNKNOWN`` for anything else."""
    if not text:
        return Severity.UNKNOWN
    label = _LABELS.get(text.strip().upper())
    if label is not None:
        return label
    if text.startswith(("CVSS:3.0/", "CVSS:3.1/")):
        try:
            return _rating(cvss3_base_score(text))
        except DataError:
            return Severity.UNKNOWN
    return Severity.UNKNOWN


def at_or_above(level: Severity, threshold: Severity) -> bool:
    """Whether a finding of ``level`` meets a ``--fail-on threshold`` (unknown counts as high)."""
    return level.rank >= threshold.rank


def cvss3_base_score(vector: str) -> float:
    """The CVSS v3.x base score of ``vector`` (e.g. ``CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H`` -> 9.8)."""
    metrics = _parse_vector(vector)
    changed = metrics["S"] == "C"
    iss = 1 - (1 - _CIA[metrics["C"]]) * (1 - _CIA[metrics["I"]]) * (1 - _CIA[metrics["A"]])
    impact = 7.52 * (iss - 0.029) - 3.25 * (iss - 0.02) ** 15 if changed else 6.42 * iss
    privileges = (_PR_CHANGED if changed else _PR_UNCHANGED)[metrics["PR"]]
    exploitability = 8.22 * _AV[metrics["AV"]] * _AC[metrics["AC"]] * privileges * _UI[metrics["UI"]]
    if impact <= 0:
        return 0.0
    total = 1.08 * (impact + exploitability) if changed else impact + exploitability
    return _roundup(min(total, 10.0))


def _parse_vector(vector: str) -> dict[str, str]:
    prefix, _, body = vector.partition("/")
    if prefix not in ("CVSS:3.0", "CVSS:3.1"):
        raise DataError(f"expected a CVSS:3.0 or CVSS:3.1 vector, got {vector!r}")
    metrics: dict[str, str] = {}
    for part in body.split("/"):
        key, _, value = part.partition(":")
        if key in metrics:
            raise DataError(f"CVSS vector {vector!r} repeats the metric {key}")
        metrics[key] = value
    for key in _BASE_METRICS:
        if metrics.get(key) not in _ALLOWED[key]:
            raise DataError(
                f"CVSS vector {vector!r}: metric {key} is {metrics.get(key)!r}; expected one of {sorted(_ALLOWED[key])}"
            )
    return metrics


def _roundup(value: float) -> float:
    """CVSS v3.1 Roundup (appendix A): the smallest one-decimal number >= value, immune to float noise."""
    scaled = round(value * 100_000)
    if scaled % 10_000 == 0:
        return scaled / 100_000
    return (math.floor(scaled / 10_000) + 1) / 10.0


def _rating(score: float) -> Severity:
    if score == 0.0:
        return Severity.NONE
    if score < 4.0:
        return Severity.LOW
    if score < 7.0:
        return Severity.MEDIUM
    if score < 9.0:
        return Severity.HIGH
    return Severity.CRITICAL
