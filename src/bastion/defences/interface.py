"""Value types shared by the training-data defences: a gate verdict and the result of a poison scan."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from torch import Tensor

__all__ = ["ClassFinding", "Decision", "ScanResult", "Verdict"]

# What a defence decides about a piece of untrusted training data.
Decision = Literal["accept", "reject"]


@dataclass(frozen=True)
class Verdict:
    """One check a retraining gate can record: ``passed`` when ``value`` is on the safe side of ``threshold``."""

    name: str
    passed: bool
    value: float
    threshold: float
    detail: str


@dataclass(frozen=True)
class ClassFinding:
    """What a scan saw in the examples labelled ``label``; ``statistic`` is compared with the scan's threshold."""

    label: int
    count: int  # examples carrying this label
    flagged: int  # of them flagged by the scan
    statistic: float
    suspicious: bool
    detail: str


@dataclass(frozen=True)
class ScanResult:
    """A poison scan over labelled training data: per-example scores and flags, per-class findings, a verdict."""

    scan: str
    layer: str  # the module whose input was read as the representation
    scores: Tensor  # float32 (n,) on the CPU: higher is more suspicious; only comparable within a class
    flagged: Tensor  # bool (n,) on the CPU
    classes: tuple[ClassFinding, ...]
    verdict: Verdict

    @property
    def flagged_indices(self) -> tuple[int, ...]:
        return tuple(int(i) for i in self.flagged.nonzero().flatten())

    @property
    def suspicious_classes(self) -> tuple[int, ...]:
        return tuple(finding.label for finding in self.classes if finding.suspicious)
