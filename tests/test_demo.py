"""The demo model: trained once into the cache, reloaded from it, accurate, and free of side effects."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from bastion.data import Dataset
from bastion.demo import DemoRecipe, cache_dir, demo_model, epochs_for
from bastion.errors import ConfigError
from bastion.models import TorchClassifier, predict


def test_cache_dir_follows_the_environment(bastion_cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert cache_dir() == bastion_cache_dir
    monkeypatch.delenv("BASTION_CACHE_DIR")
    assert cache_dir() == Path.home() / ".cache" / "bastion"


def test_digits_model_is_cached_and_reloaded(digits_model: TorchClassifier, bastion_cache_dir: Path) -> None:
    # The seed-0 model's file (other tests cache other seeds beside it, e.g. the fuzzer's held-out oracle).
    key = DemoRecipe(dataset="digits", seed=0, epochs=epochs_for("digits")).key()
    files = sorted(bastion_cache_dir.glob(f"demo-digits-{key}.safetensors"))
    assert len(files) == 1
    stamp = files[0].stat().st_mtime_ns
    again = demo_model("digits")  # from the cache: no retraining, the same weights
    assert files[0].stat().st_mtime_ns == stamp
    for a, b in zip(digits_model.module.state_dict().values(), again.module.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_digits_model_is_accurate_and_in_eval_mode(digits_model: TorchClassifier, digits_data: Dataset) -> None:
    assert digits_model.input_shape == (1, 8, 8)
    assert digits_model.num_classes == 10 and digits_model.bounds == (0.0, 1.0)
    assert not any(m.training for m in digits_model.module.modules())
    accuracy = float((predict(digits_model, digits_data.x) == digits_data.y).float().mean())
    assert accuracy >= 0.9


def test_loading_leaves_the_global_rng_alone(digits_model: TorchClassifier) -> None:
    torch.manual_seed(1234)
    expected = torch.rand(3)
    torch.manual_seed(1234)
    demo_model("digits")
    assert torch.equal(torch.rand(3), expected)


def test_unknown_demo_dataset() -> None:
    with pytest.raises(ConfigError, match="unknown demo dataset 'cifar': expected one of breast-cancer, digits, mnist"):
        demo_model("cifar")


def _trained(seed: int) -> dict[str, torch.Tensor]:
    from bastion.data import load_demo
    from bastion.demo import DemoRecipe, train
    from bastion.models.zoo import build

    torch.manual_seed(seed)
    module = build("digits")
    recipe = DemoRecipe(dataset="digits", epochs=2, seed=seed)
    return train(module, load_demo("digits", "train"), recipe).state_dict()


def test_training_is_deterministic_under_a_seed() -> None:
    a, b, c = _trained(0), _trained(0), _trained(1)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)
