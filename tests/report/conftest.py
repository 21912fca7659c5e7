"""A realistic assessment built by hand: two attacks at three epsilons on 8x8 grey digits."""

from __future__ import annotations

import pytest

from bastion.report import (
    SCHEMA_VERSION,
    Assessment,
    AttackRun,
    ClassRow,
    DataInfo,
    Environment,
    ExampleImage,
    Finding,
    ModelInfo,
    Settings,
    Threshold,
    WorstCase,
)

EPSILONS = (0.05, 0.1, 0.2)
# Robust accuracy per attack and epsilon: PGD is stronger than FGSM everywhere.
ROBUST = {"fgsm": (0.71, 0.52, 0.23), "pgd": (0.64, 0.38, 0.07)}
WORST = (0.62, 0.35, 0.05)


def _run(attack: str, eps: float, robust: float, steps: int) -> AttackRun:
    return AttackRun(
        attack=attack,
        norm="linf",
        eps=eps,
        n_examples=200,
        robust_accuracy=robust,
        success_rate=round(1 - robust / 0.9, 4),
        median_distance=None if attack == "fgsm" and eps == 0.05 else eps * 0.97,
        queries_median=float(steps + 1),
        queries_max=steps + 1,
        gradients_total=200 * steps,
        elapsed=0.25 * steps,
        config={"steps": steps, "random_start": attack == "pgd", "loss": "ce"},
    )


def _example(index: int, label: int, adversarial_prediction: int, delta: int) -> ExampleImage:
    clean = tuple((row * 8 + col) * 4 for row in range(8) for col in range(8))
    # A sparse, sign-alternating perturbation, clipped to the 0..255 pixel range.
    adversarial = tuple(
        min(255, max(0, value + (delta if i % 3 else -delta))) if i % 2 else value for i, value in enumerate(clean)
    )
    return ExampleImage(
        index=index,
        label=label,
        clean_prediction=label,
        adversarial_prediction=adversarial_prediction,
        attack="pgd",
        eps=0.1,
        shape=(1, 8, 8),
        clean=clean,
        adversarial=adversarial,
    )


@pytest.fixture
def assessment() -> Assessment:
    runs = tuple(
        _run(attack, eps, robust, 1 if attack == "fgsm" else 40)
        for attack, values in ROBUST.items()
        for eps, robust in zip(EPSILONS, values, strict=True)
    )
    return Assessment(
        schema_version=SCHEMA_VERSION,
        environment=Environment(
            bastion="0.1.0",
            torch="2.13.0+cpu",
            python="3.11.9",
            platform="Linux-6.1-x86_64",
            created="2025-01-31T12:00:00Z",
        ),
        model=ModelInfo(
            name="digits-cnn",
            input_shape=(1, 8, 8),
            num_classes=10,
            bounds=(0.0, 1.0),
            knowledge="white-box",
            device="cpu",
        ),
        data=DataInfo(name="sklearn-digits", n_examples=200, class_names=tuple(str(d) for d in range(10))),
        settings=Settings(
            preset="quick",
            norm="linf",
            epsilons=EPSILONS,
            attacks=("fgsm", "pgd"),
            n_examples=200,
            batch_size=64,
            seed=0,
            device="cpu",
            engine="local",
        ),
        clean_accuracy=0.9,
        runs=runs,
        worst_case=tuple(
            WorstCase(eps=eps, robust_accuracy=robust, broken_by={"fgsm": 20 + i, "pgd": 30 + i})
            for i, (eps, robust) in enumerate(zip(EPSILONS, WORST, strict=True))
        ),
        per_class=(
            ClassRow(
                label=0,
                name="0",
                n_examples=20,
                clean_accuracy=1.0,
                robust_accuracy={"0.05": 0.9, "0.1": 0.6, "0.2": 0.15},
            ),
            ClassRow(
                label=1,
                name="1",
                n_examples=20,
                clean_accuracy=0.85,
                robust_accuracy={"0.05": 0.55, "0.1": 0.3, "0.2": 0.0},
            ),
        ),
        findings=(
            Finding(
                check="gradient_masking",
                severity="error",
                message="PGD weaker than FGSM at eps=0.05",
                details={"pgd": 0.64, "fgsm": 0.71},
            ),
            Finding(check="clean_accuracy", severity="warning", message="clean accuracy below 95%"),
            Finding(
                check="randomness",
                severity="info",
                message="outputs are deterministic",
                details={"repeats": 3},
            ),
        ),
        examples=(_example(3, 7, 1, 12), _example(11, 2, 8, 40), _example(42, 5, 5, 0)),
        thresholds=(
            Threshold(metric="clean_accuracy", eps=None, required=0.8, actual=0.9, passed=True),
            Threshold(metric="robust_accuracy", eps=0.1, required=0.5, actual=0.35, passed=False),
        ),
        elapsed=42.5,
    )
