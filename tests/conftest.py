"""Shared fixtures: a per-session model cache, the demo digits CNN and data splits, and a linear-model factory."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from torch import nn

from bastion.data import Dataset, load_demo
from bastion.demo import demo_model
from bastion.models import TorchClassifier

LinearFactory = Callable[..., TorchClassifier]


@pytest.fixture(scope="session", autouse=True)
def bastion_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """``BASTION_CACHE_DIR`` for the whole session: demo models train once, never in the user's cache."""
    # One intra-op thread: on the 2 shared cores, OpenMP's spinning threads make small-tensor work
    # several times slower under load (training the digits CNN: ~6 s instead of ~30 s).
    torch.set_num_threads(1)
    path = tmp_path_factory.mktemp("bastion-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BASTION_CACHE_DIR", str(path))
        yield path


@pytest.fixture(scope="session")
def digits_model(bastion_cache_dir: Path) -> TorchClassifier:
    """The demo CNN for the 8x8 digits (trains in seconds). Shared: reset ``queries`` before counting."""
    return demo_model("digits")


@pytest.fixture(scope="session")
def digits_data() -> Dataset:
    """The first 64 test images of the 8x8 digits."""
    test = load_demo("digits", "test")
    return replace(test, x=test.x[:64], y=test.y[:64], name="digits-test-64")


@pytest.fixture(scope="session")
def digits_train() -> Dataset:
    """The whole training split of the 8x8 digits."""
    return load_demo("digits", "train")


@pytest.fixture(scope="session")
def digits_test() -> Dataset:
    """The whole test split of the 8x8 digits."""
    return load_demo("digits", "test")


@pytest.fixture
def linear_model() -> LinearFactory:
    """Build a seeded TorchClassifier around ``Flatten -> Linear(d, k)``."""

    def build(
        d: int = 4,
        k: int = 3,
        *,
        input_shape: tuple[int, ...] | None = None,
        bounds: tuple[float, float] = (0.0, 1.0),
        seed: int = 0,
    ) -> TorchClassifier:
        gen = torch.Generator().manual_seed(seed)
        linear = nn.Linear(d, k)
        with torch.no_grad():
            linear.weight.copy_(torch.randn(k, d, generator=gen))
            linear.bias.copy_(torch.randn(k, generator=gen))
        module = nn.Sequential(nn.Flatten(), linear).eval()
        return TorchClassifier(module, input_shape=input_shape or (d,), bounds=bounds, name="linear")

    return build


@pytest.fixture
def need_atheris() -> None:
    """atheris is a dependency on Linux x86-64: missing there on CI is a failure, elsewhere a skip."""

    if importlib.util.find_spec("atheris") is not None:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail("atheris is not installed (a dependency of bastion on Linux x86-64)")
    pytest.skip("atheris (libFuzzer for Python) is not installed")
