"""Hardening fixtures: short, real adversarial-training runs shared by several tests."""

from __future__ import annotations

from typing import Any

import pytest

from bastion.data import Dataset
from bastion.harden import HardenResult, harden
from bastion.models import TorchClassifier

# Short runs on the 8x8 digits that still move the figures: measured on 2 loaded cores, 3-5 s each.
FAST: dict[str, Any] = {"eps": 0.2, "epochs": 3, "steps": 5, "batch_size": 32, "lr": 3e-3, "seed": 0}


@pytest.fixture(scope="session")
def fast() -> dict[str, Any]:
    """Settings of a short real run: eps 0.2, 3 epochs, 5 PGD steps, batches of 32."""
    return dict(FAST)


@pytest.fixture(scope="session")
def pgd_hardened(digits_model: TorchClassifier, digits_train: Dataset) -> HardenResult:
    return harden(digits_model, digits_train, method="pgd", **FAST)


@pytest.fixture(scope="session")
def reject_hardened(digits_model: TorchClassifier, digits_train: Dataset) -> HardenResult:
    return harden(digits_model, digits_train, method="reject-class", **FAST)
