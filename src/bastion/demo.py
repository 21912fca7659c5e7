"""The bundled demo model: a small CNN trained locally on bundled data in seconds, deterministic, cached."""

from __future__ import annotations

import hashlib
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from bastion.data.dataset import Dataset
from bastion.data.demo import DEMO_DATASETS, load_demo
from bastion.errors import ConfigError
from bastion.models.torch import TorchClassifier
from bastion.models.zoo import build

__all__ = ["DemoRecipe", "cache_dir", "demo_model", "train"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DemoRecipe:
    """How the demo model is trained; a change here changes the cache key."""

    dataset: str = "mnist"
    epochs: int = 10  # ~97-98% test accuracy on the 1000 MNIST test images
    batch_size: int = 64
    lr: float = 2e-3  # Adam
    seed: int = 0
    version: int = 2  # bump when the architecture, the loop or the training data's order changes

    def key(self) -> str:
        return hashlib.sha256(repr(self).encode()).hexdigest()[:12]


# Epochs per bundled dataset: each trains in seconds on two cores.
_EPOCHS = {"mnist": 10, "digits": 30, "breast-cancer": 60}


def epochs_for(dataset: str) -> int:
    """The epochs the demo model of ``dataset`` trains for."""
    return _EPOCHS[dataset]


def cache_dir() -> Path:
    """Where trained demo models are kept: ``$BASTION_CACHE_DIR`` or ``~/.cache/bastion``."""
    root = os.environ.get("BASTION_CACHE_DIR") or Path.home() / ".cache" / "bastion"
    return Path(root)


def train(module: nn.Module, data: Dataset, recipe: DemoRecipe) -> nn.Module:
    """Plain cross-entropy training with Adam, seeded and single-threaded-deterministic."""
    gen = torch.Generator().manual_seed(recipe.seed)
    opt = torch.optim.Adam(module.parameters(), lr=recipe.lr)
    loss_fn = nn.CrossEntropyLoss()
    module.train()
    for _ in range(recipe.epochs):
        order = torch.randperm(len(data), generator=gen)
        for start in range(0, len(data), recipe.batch_size):
            idx = order[start : start + recipe.batch_size]
            opt.zero_grad(set_to_none=True)
            loss_fn(module(data.x[idx]), data.y[idx]).backward()
            opt.step()
    module.eval()
    return module


def demo_model(dataset: str = "mnist", *, seed: int = 0, device: str | torch.device = "cpu") -> TorchClassifier:
    """The demo CNN for ``dataset``, trained on first use (about 10 s on 2 cores for MNIST) and cached."""
    if dataset not in DEMO_DATASETS:
        raise ConfigError(f"unknown demo dataset {dataset!r}: expected one of {', '.join(DEMO_DATASETS)}")
    recipe = DemoRecipe(dataset=dataset, seed=seed, epochs=_EPOCHS[dataset])
    path = cache_dir() / f"demo-{dataset}-{recipe.key()}.safetensors"
    with torch.random.fork_rng(devices=[]):  # a seeded initialisation that leaves the caller's RNG alone
        torch.manual_seed(recipe.seed)
        module = build(dataset)
    if path.exists():
        from safetensors.torch import load_file

        module.load_state_dict(load_file(str(path)))
    else:
        log.info("training the demo %s model (first use, seed %d)", dataset, seed)
        started = time.perf_counter()
        train(module, load_demo(dataset, "train"), recipe)
        _save_atomic(module, path)
        log.info(
            "trained in %.1f s: test accuracy %.1f%%; cached at %s",
            time.perf_counter() - started,
            100 * _accuracy(module, load_demo(dataset, "test")),
            path,
        )
    module.eval().to(torch.device(device))
    train_data = load_demo(dataset, "train")
    return TorchClassifier(
        module,
        input_shape=train_data.input_shape,
        num_classes=len(train_data.class_names or ()) or None,
        bounds=(0.0, 1.0),
        name=f"demo-{dataset}-{'mlp' if dataset == 'breast-cancer' else 'cnn'}",
    )


def _accuracy(module: nn.Module, data: Dataset) -> float:
    with torch.no_grad():
        return float((module(data.x).argmax(dim=1) == data.y).float().mean())


def _save_atomic(module: nn.Module, path: Path) -> None:
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    save_file({k: v.contiguous() for k, v in module.state_dict().items()}, str(tmp))
    tmp.replace(path)
