"""Poisoning fixtures: a short demo recipe and a clean reference model (the digits splits are in tests/conftest.py)."""

from __future__ import annotations

import pytest

from bastion.data import Dataset
from bastion.models import TorchClassifier
from bastion.training import TorchRecipe, demo_recipe

# Epochs per retraining: ~97% clean test accuracy on the digits, and a second or two per fit on one core.
EPOCHS = 8


@pytest.fixture(scope="session")
def digits_recipe() -> TorchRecipe:
    return demo_recipe("digits", epochs=EPOCHS)


@pytest.fixture(scope="session")
def clean_model(digits_recipe: TorchRecipe, digits_train: Dataset) -> TorchClassifier:
    """The reference model: the recipe trained on the clean digits (shared: reset ``queries`` before counting)."""
    return digits_recipe.fit(digits_train, seed=0)
