"""Fixtures for the attack tests: the MNIST demo CNN with its first test images, and binary linear models."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

from bastion.data import load_demo
from bastion.demo import cache_dir, demo_model
from bastion.models import TorchClassifier

# The caller's cache (BASTION_CACHE_DIR or ~/.cache/bastion), read before the session fixture swaps
# in a fresh folder: a demo model already trained there is copied in, not trained again (~15 s).
CALLER_CACHE = cache_dir()
N_MNIST = 200


@pytest.fixture(scope="session")
def mnist_model(bastion_cache_dir: Path) -> TorchClassifier:
    """The undefended MNIST demo CNN (shared: count queries by difference, or build a fresh wrapper)."""
    if CALLER_CACHE.is_dir():
        for cached in CALLER_CACHE.glob("demo-mnist-*.safetensors"):
            shutil.copy(cached, bastion_cache_dir / cached.name)
    return demo_model("mnist")


@pytest.fixture(scope="session")
def mnist_xy() -> tuple[Tensor, Tensor]:
    """The first 200 of the 1000 MNIST test images and their labels."""
    test = load_demo("mnist", "test")
    return test.x[:N_MNIST], test.y[:N_MNIST]


@pytest.fixture(scope="session")
def mnist_mixed() -> tuple[Tensor, Tensor]:
    """The 1000 MNIST test images (sorted by class on disk) dealt round-robin: any first 10k hold k of each class."""
    test = load_demo("mnist", "test")
    one_hot = torch.nn.functional.one_hot(test.y)
    rank = (one_hot.cumsum(dim=0) * one_hot).sum(dim=1) - 1  # the image's place among those of its class
    order = torch.argsort(rank * one_hot.shape[1] + test.y)
    return test.x[order], test.y[order]


# A binary linear classifier z = W x + c, some inputs, its labels, and its decision function
# g(x) = w.x + b (w = W1 - W0, b = c1 - c0): the label flips at L2 distance |g(x)| / ||w||_2 and at
# Linf distance |g(x)| / ||w||_1.
BinaryLinear = tuple[TorchClassifier, Tensor, Tensor, Tensor, Tensor]


@pytest.fixture
def binary_linear() -> BinaryLinear:
    """``(model, x, y, w, b)``: 10 features, 64 inputs in [-0.5, 0.5], labels = the model's predictions.

    The bounds (-2, 2) never bind: every minimal perturbation here moves a feature by less than 1.5.
    """
    gen = torch.Generator().manual_seed(0)
    d, n = 10, 64
    linear = nn.Linear(d, 2)
    with torch.no_grad():
        linear.weight.copy_(torch.randn(2, d, generator=gen))
        linear.bias.copy_(torch.randn(2, generator=gen))
    model = TorchClassifier(nn.Sequential(linear).eval(), input_shape=(d,), bounds=(-2.0, 2.0), name="linear")
    x = torch.rand(n, d, generator=gen) - 0.5
    with torch.no_grad():
        y = linear(x).argmax(dim=1)
        w, b = linear.weight[1] - linear.weight[0], linear.bias[1] - linear.bias[0]
    assert float(((x @ w + b).abs() / w.norm()).max()) < 1.5, "a minimal perturbation would reach the bounds"
    return model, x, y, w.clone(), b.clone()
