"""Estimated gradients (NES, SPSA) of a scores-only model: close to the truth, good enough for PGD, and counted."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from bastion.attacks import PGD
from bastion.attacks.losses import cross_entropy
from bastion.data import load_demo
from bastion.demo import cache_dir, demo_model
from bastion.errors import ConfigError
from bastion.models import Estimated, Knowledge, TorchClassifier, restrict, value_and_grad

LinearFactory = Callable[..., TorchClassifier]


# The caller's cache, read before the session fixture swaps in a fresh folder (as in tests/attacks/conftest.py).
CALLER_CACHE = cache_dir()


@pytest.fixture(scope="module")
def mnist(bastion_cache_dir: Path) -> tuple[TorchClassifier, Tensor, Tensor]:
    """The MNIST demo CNN (copied from the caller's cache when trained there) and 16 test images."""
    if CALLER_CACHE.is_dir():
        for cached in CALLER_CACHE.glob("demo-mnist-*.safetensors"):
            shutil.copy(cached, bastion_cache_dir / cached.name)
    test = load_demo("mnist", "test")
    return demo_model("mnist"), test.x[:16], test.y[:16]


def cosines(model: TorchClassifier, view: Estimated, x: Tensor, y: Tensor) -> Tensor:
    _, _, truth = value_and_grad(model, x, lambda z: cross_entropy(z, y))
    _, _, estimate = value_and_grad(view, x, lambda z: cross_entropy(z, y))
    return F.cosine_similarity(estimate.flatten(1), truth.flatten(1))


@pytest.mark.parametrize("method", ["nes", "spsa"])
def test_estimate_points_along_the_true_gradient(mnist: tuple[TorchClassifier, Tensor, Tensor], method: str) -> None:
    model, x, y = mnist
    cos = cosines(model, Estimated(restrict(model, "scores"), method, samples=50, sigma=0.01), x, y)  # type: ignore[arg-type]
    # 25 random directions in 784 dimensions: a perfect estimator of a linear map reaches ~sqrt(25/809) = 0.18.
    assert float(cos.mean()) > 0.1
    assert float((cos > 0).float().mean()) >= 0.9


@pytest.mark.parametrize("method", ["nes", "spsa"])
def test_estimate_of_a_linear_model_converges(linear_model: LinearFactory, method: str) -> None:
    model = linear_model(6, 3)
    x, y = torch.rand(4, 6, generator=torch.Generator().manual_seed(0)), torch.tensor([0, 1, 2, 0])
    cos = cosines(model, Estimated(restrict(model, "scores"), method, samples=4000, sigma=0.01), x, y)  # type: ignore[arg-type]
    assert float(cos.min()) > 0.98


def test_pgd_on_estimated_gradients_breaks_most_examples(mnist: tuple[TorchClassifier, Tensor, Tensor]) -> None:
    model, x, y = mnist
    view = Estimated(restrict(model, "scores"), "nes", samples=40, sigma=0.01)
    before = model.queries.forward
    result = PGD(steps=40, step_size=0.03, early_stop=True)(view, x, y, norm="linf", eps=0.3, seed=0)
    # measured 0.5-0.69 of 16 depending on the demo model; white-box PGD: 1.0; random signs at eps 0.3: ~0.03
    assert result.success_rate >= 0.3
    # The attack's ledger matches the view's counter; the wrapped model pays samples per gradient row.
    assert int(result.queries.sum()) == view.queries.forward
    assert int(result.gradients.sum()) == view.queries.backward
    true_cost = model.queries.forward - before
    assert true_cost == view.queries.forward + view.queries_per_gradient * view.queries.backward


def test_same_seed_same_estimate(linear_model: LinearFactory) -> None:
    model = linear_model(5, 3)
    x, y = torch.rand(3, 5), torch.tensor([0, 1, 2])
    grads = [
        value_and_grad(Estimated(model, "spsa", samples=4, seed=3), x, lambda z: cross_entropy(z, y))[2]
        for _ in range(2)
    ]
    assert torch.equal(grads[0], grads[1])


def test_view_is_white_box_over_the_same_model(linear_model: LinearFactory) -> None:
    model = linear_model(4, 3)
    view = Estimated(restrict(model, "scores"))
    assert view.knowledge is Knowledge.WHITE_BOX and view.queries_per_gradient == 50
    assert (view.input_shape, view.num_classes, view.bounds, view.device) == (
        model.input_shape, model.num_classes, model.bounds, model.device,
    )  # fmt: skip
    x = torch.rand(2, 4)
    torch.testing.assert_close(view.logits(x), model.module(x).detach())


def test_bad_settings_are_refused(linear_model: LinearFactory) -> None:
    model = linear_model(4, 3)
    with pytest.raises(ConfigError, match="unknown gradient estimator 'zoo': expected one of nes, spsa"):
        Estimated(model, "zoo")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"expected an even number of samples >= 2 .* got 5"):
        Estimated(model, samples=5)
    with pytest.raises(ConfigError, match="expected sigma > 0, got 0"):
        Estimated(model, sigma=0)
    with pytest.raises(ConfigError, match="gradient estimation needs scores; the model exposes only labels"):
        Estimated(restrict(model, "labels"))
