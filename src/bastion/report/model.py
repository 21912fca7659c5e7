"""The assessment report as frozen value types: the single source the JSON, HTML, JUnit and terminal views render.

Schema changes bump :data:`SCHEMA_VERSION` (major for breaking changes).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "SCHEMA_VERSION",
    "Assessment",
    "AttackRun",
    "ClassRow",
    "DataInfo",
    "Environment",
    "ExampleImage",
    "Finding",
    "ModelInfo",
    "Settings",
    "Threshold",
    "WorstCase",
]

SCHEMA_VERSION = "1.0"

Severity = Literal["info", "warning", "error"]


@dataclass(frozen=True)
class ModelInfo:
    name: str
    input_shape: tuple[int, ...]
    num_classes: int
    bounds: tuple[float, float]
    knowledge: str  # white-box | scores | labels
    device: str


@dataclass(frozen=True)
class DataInfo:
    name: str
    n_examples: int  # examples assessed
    class_names: tuple[str, ...]


@dataclass(frozen=True)
class Settings:
    preset: str
    norm: str
    epsilons: tuple[float, ...]
    attacks: tuple[str, ...]
    n_examples: int | None
    batch_size: int
    seed: int
    device: str
    engine: str


@dataclass(frozen=True)
class Environment:
    bastion: str
    torch: str
    python: str
    platform: str
    created: str  # ISO 8601, UTC


@dataclass(frozen=True)
class AttackRun:
    """One attack at one epsilon, over every assessed example."""

    attack: str
    norm: str
    eps: float
    n_examples: int
    robust_accuracy: float  # share of all examples still classified correctly under this attack
    success_rate: float  # share of clean-correct examples this attack broke
    median_distance: float | None  # over successful examples, in the run's norm
    queries_median: float  # forward rows per example
    queries_max: int
    gradients_total: int  # backward rows in all
    elapsed: float  # seconds
    config: dict[str, Any] = field(default_factory=dict)
    incomplete: int = 0  # examples whose attack did not complete (partial results): they count as unbroken
    incomplete_reasons: dict[str, int] = field(default_factory=dict)  # reason -> examples
    # Tabular data: feature -> broken examples in which the attack changed that feature
    features_changed: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class WorstCase:
    """Per-example worst case over every attack at one epsilon (the ensemble view)."""

    eps: float
    robust_accuracy: float
    broken_by: dict[str, int]  # attack -> examples it was the first to break


@dataclass(frozen=True)
class ClassRow:
    label: int
    name: str
    n_examples: int
    clean_accuracy: float
    robust_accuracy: dict[str, float]  # f"{eps:g}" -> worst-case robust accuracy for this class


@dataclass(frozen=True)
class Finding:
    """A trust check's verdict on whether the numbers can be believed."""

    check: str
    severity: Severity
    message: str
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ExampleImage:
    """A clean input and its adversarial counterpart, for the grid in the HTML report."""

    index: int
    label: int
    clean_prediction: int
    adversarial_prediction: int
    attack: str
    eps: float
    shape: tuple[int, ...]
    clean: tuple[int, ...]  # pixels scaled to 0..255 over the model's bounds, row-major
    adversarial: tuple[int, ...]


@dataclass(frozen=True)
class Threshold:
    """A ``--fail-under`` requirement and whether the assessment met it."""

    metric: str  # "robust_accuracy" or "clean_accuracy"
    eps: float | None
    required: float
    actual: float
    passed: bool


@dataclass(frozen=True)
class Assessment:
    schema_version: str
    environment: Environment
    model: ModelInfo
    data: DataInfo
    settings: Settings
    clean_accuracy: float
    runs: tuple[AttackRun, ...]
    worst_case: tuple[WorstCase, ...]
    per_class: tuple[ClassRow, ...]
    findings: tuple[Finding, ...]
    examples: tuple[ExampleImage, ...]
    thresholds: tuple[Threshold, ...]
    elapsed: float

    @property
    def passed(self) -> bool:
        return all(t.passed for t in self.thresholds)
