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
    "UniversalRun",
    "WorstCase",
]

# 1.1 added ``universal`` (a universal patch or perturbation trained on part of the data).
SCHEMA_VERSION = "1.1"

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
class UniversalRun:
    """A universal pattern (patch or perturbation) learned on part of the data and measured on the held-out rest."""

    attack: str  # "patch" or "universal-perturbation"
    config: dict[str, Any]  # the training settings, JSON values
    n_train: int  # inputs it was trained on
    n_holdout: int  # inputs it was measured on, none of them among the training ones
    train_success: float  # share of the clean-correct training inputs it fools
    holdout_success: float  # fooling rate: share of the clean-correct held-out inputs it makes misclassified
    holdout_target_success: float | None  # targeted: share of those of another class that it sends to the target
    baseline_success: float  # the held-out fooling rate of a random pattern of the same size
    queries: int  # forward rows spent learning it
    gradients: int  # backward rows spent learning it
    elapsed: float  # seconds, learning and measuring
    shape: tuple[int, ...]  # (C, s, s) for a patch, the input shape for a perturbation
    pixels: tuple[int, ...]  # the pattern row-major, as integers 0..255 over pixel_range
    pixel_range: tuple[float, float]  # the values that pixel 0 and pixel 255 stand for
    png: str | None = None  # the PNG written beside report.json (a file name in its folder), if any


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
    universal: tuple[UniversalRun, ...] = ()  # patch and perturbation, when asked for (schema 1.1)

    @property
    def passed(self) -> bool:
        return all(t.passed for t in self.thresholds)
