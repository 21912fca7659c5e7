"""Training recipes: how a model is (re)trained from data, so that poisoning, RONI, the gate and retraining are real.

A recipe is the user's own training procedure behind one method, ``fit(data, seed=..., init=...)``,
returning a fresh :class:`~bastion.models.torch.TorchClassifier`. ``init`` warm-starts from an
existing model's weights (the incremental retraining RONI and the retrain loop rely on to stay
affordable). The bundled demo recipe is plain Adam on cross-entropy, as the demo models use.

Example::

    recipe = demo_recipe("digits")
    model = recipe.fit(load_demo("digits", "train"), seed=0)
    tuned = recipe.fit(more_data, seed=0, init=model, epochs=2)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Protocol, runtime_checkable

import torch
from torch import nn

from bastion.data.dataset import Dataset
from bastion.errors import ConfigError, DataError, ModelError
from bastion.models.load import load_factory
from bastion.models.torch import TorchClassifier

__all__ = ["Recipe", "TorchRecipe", "demo_recipe", "load_recipe"]


@runtime_checkable
class Recipe(Protocol):
    """Trains a model on a dataset; deterministic for a given seed."""

    @property
    def name(self) -> str: ...

    def fit(
        self, data: Dataset, *, seed: int = 0, init: TorchClassifier | None = None, epochs: int | None = None
    ) -> TorchClassifier: ...


@dataclass(frozen=True, kw_only=True)
class TorchRecipe:
    """Mini-batch Adam on cross-entropy for the module ``factory`` builds; ``epochs`` per fit unless overridden."""

    factory: Callable[[], nn.Module]
    input_shape: tuple[int, ...]
    num_classes: int
    bounds: tuple[float, float] = (0.0, 1.0)
    epochs: int = 10
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 0.0
    name: str = "torch-recipe"
    # "package.module:callable" naming ``factory``, so that a registry can rebuild the module from weights.
    factory_spec: str | None = None

    def fit(
        self, data: Dataset, *, seed: int = 0, init: TorchClassifier | None = None, epochs: int | None = None
    ) -> TorchClassifier:
        """A model trained on ``data`` (from ``init``'s weights when given, else a seeded initialisation)."""
        self._check(data)
        module = self._start(seed, init)
        device = next(module.parameters()).device
        gen = torch.Generator().manual_seed(seed)
        optimiser = torch.optim.Adam(module.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        loss_fn = nn.CrossEntropyLoss()
        x, y = data.x.to(device), data.y.to(device)
        module.train()
        for _ in range(self.epochs if epochs is None else epochs):
            order = torch.randperm(len(data), generator=gen).to(device)
            for start in range(0, len(data), self.batch_size):
                batch = order[start : start + self.batch_size]
                optimiser.zero_grad(set_to_none=True)
                loss_fn(module(x[batch]), y[batch]).backward()
                optimiser.step()
        module.eval()
        return TorchClassifier(
            module, input_shape=self.input_shape, num_classes=self.num_classes, bounds=self.bounds, name=self.name
        )

    def with_epochs(self, epochs: int) -> TorchRecipe:
        return replace(self, epochs=epochs)

    def _start(self, seed: int, init: TorchClassifier | None) -> nn.Module:
        with torch.random.fork_rng(devices=[]):  # a seeded initialisation that leaves the caller's RNG alone
            torch.manual_seed(seed)
            module = self.factory()
        if not isinstance(module, nn.Module) or not any(p.requires_grad for p in module.parameters()):
            raise ModelError(f"recipe {self.name}: the factory must build an nn.Module with trainable parameters")
        if init is not None:
            try:
                module.load_state_dict(init.module.state_dict())
            except RuntimeError as error:
                raise ModelError(f"recipe {self.name}: cannot warm-start from {init.name}: {error}") from None
            module.to(init.device)
        return module

    def _check(self, data: Dataset) -> None:
        if data.input_shape != self.input_shape:
            raise DataError(f"recipe {self.name} trains on inputs of shape {self.input_shape}, got {data.input_shape}")
        if len(data) == 0:
            raise DataError(f"recipe {self.name}: no training examples")
        labels = data.y
        if int(labels.min()) < 0 or int(labels.max()) >= self.num_classes:
            raise DataError(
                f"recipe {self.name}: labels must be in [0, {self.num_classes - 1}], "
                f"got [{int(labels.min())}, {int(labels.max())}]"
            )


def demo_recipe(dataset: str = "mnist", *, epochs: int | None = None) -> TorchRecipe:
    """The recipe the bundled demo model of ``dataset`` is trained with."""
    from bastion.data.demo import DEMO_DATASETS, load_demo
    from bastion.demo import DemoRecipe, epochs_for
    from bastion.models.zoo import build

    if dataset not in DEMO_DATASETS:
        raise ConfigError(f"unknown demo dataset {dataset!r}: expected one of {', '.join(DEMO_DATASETS)}")
    test = load_demo(dataset, "test")
    architecture = type(build(dataset)).__name__
    return TorchRecipe(
        factory=lambda: build(dataset),
        factory_spec=f"bastion.models.zoo:{architecture}",
        input_shape=test.input_shape,
        num_classes=len(test.class_names or ()) or int(test.y.max()) + 1,
        bounds=test.bounds,
        epochs=epochs_for(dataset) if epochs is None else epochs,
        batch_size=DemoRecipe.batch_size,
        lr=DemoRecipe.lr,
        name=f"demo:{dataset}",
    )


def load_recipe(spec: str) -> Recipe:
    """``demo:NAME`` or ``package.module:function`` returning a :class:`Recipe` (the user's training code)."""
    if spec.startswith("demo:"):
        return demo_recipe(spec[5:])
    made = load_factory(spec)()
    if not isinstance(made, Recipe):
        raise ConfigError(f"{spec!r} returned {type(made).__name__}, expected a recipe with fit(data, seed=...)")
    return made
