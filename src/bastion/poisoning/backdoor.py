"""Backdoors: poisons that teach the model to send any input carrying a trigger to the target label.

- :class:`BadNets`: Gu, Dolan-Gavitt & Garg, "BadNets: Identifying Vulnerabilities in the Machine
  Learning Model Supply Chain", 2017, https://arxiv.org/abs/1708.06733. A small pixel pattern
  (a checkerboard of the extreme values) stamped in a corner; on tabular inputs, a fixed extreme
  value on a few features.
- :class:`BlendBackdoor`: Chen, Liu, Li, Lu & Song, "Targeted Backdoor Attacks on Deep Learning
  Systems Using Data Poisoning", 2017, https://arxiv.org/abs/1712.05526 (blended injection):
  ``x' = (1 - alpha) x + alpha * pattern`` with a random-noise pattern over the whole input.

Both append ``round(rate * n)`` poisons: copies of randomly chosen training examples of other
classes, triggered and labelled ``target`` (the attacker supplies extra training data). The
result's ``trigger`` applies to any batch of test inputs; the attack success rate is the share of
triggered test inputs of other classes that the retrained model assigns to ``target``.

Example::

    poisoned = BadNets(target=0, size=3)(train, rate=0.1, seed=0)
    model = recipe.fit(poisoned.data, seed=0)
    hits = predict(model, poisoned.trigger.apply(test.x[test.y != 0])) == 0
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from bastion.data.dataset import Dataset
from bastion.errors import ConfigError, DataError
from bastion.models.interface import Classifier
from bastion.poisoning.interface import (
    PoisonResult,
    Trigger,
    append_poisons,
    check_label,
    class_count,
    poison_count,
)

__all__ = ["BadNets", "BlendBackdoor", "badnets_trigger", "blend_trigger"]

CORNERS = ("bottom-right", "bottom-left", "top-right", "top-left")


def badnets_trigger(
    input_shape: tuple[int, ...], bounds: tuple[float, float], *, size: int, corner: str = "bottom-right"
) -> Trigger:
    """A ``size x size`` checkerboard of the bounds' extremes in ``corner`` (images), or the high
    bound on the last ``size`` features (flat tabular inputs)."""
    lo, hi = bounds
    if corner not in CORNERS:
        raise ConfigError(f"unknown corner {corner!r}: expected one of {', '.join(CORNERS)}")
    if len(input_shape) == 1:
        if not 1 <= size <= input_shape[0]:
            raise ConfigError(f"expected a trigger of 1..{input_shape[0]} features, got size {size}")
        mask = torch.zeros(input_shape)
        mask[-size:] = 1.0
        return Trigger(pattern=torch.full(input_shape, hi), mask=mask, kind="features")
    if len(input_shape) not in (2, 3):
        raise ConfigError(f"BadNets needs images (HxW or CxHxW) or flat features, got inputs of shape {input_shape}")
    height, width = input_shape[-2:]
    if not 1 <= size <= min(height, width):
        raise ConfigError(f"expected a patch size in 1..{min(height, width)} pixels, got {size}")
    rows = slice(height - size, height) if corner.startswith("bottom") else slice(0, size)
    cols = slice(width - size, width) if corner.endswith("right") else slice(0, size)
    checker = (torch.arange(size).view(-1, 1) + torch.arange(size).view(1, -1)) % 2 == 0
    pattern = torch.full(input_shape, lo)
    mask = torch.zeros(input_shape)
    pattern[..., rows, cols] = torch.where(checker, hi, lo)
    mask[..., rows, cols] = 1.0
    return Trigger(pattern=pattern, mask=mask, kind="patch")


def blend_trigger(input_shape: tuple[int, ...], bounds: tuple[float, float], *, alpha: float, seed: int) -> Trigger:
    """Uniform noise within the bounds over the whole input, blended in at opacity ``alpha``."""
    if not 0.0 < alpha <= 1.0:
        raise ConfigError(f"expected a blend alpha in (0, 1], got {alpha}")
    lo, hi = bounds
    noise = torch.rand(input_shape, generator=torch.Generator().manual_seed(seed))
    return Trigger(pattern=lo + (hi - lo) * noise, mask=torch.ones(input_shape), alpha=alpha, kind="blend")


def _implant(attack: str, data: Dataset, trigger: Trigger, target: int, *, rate: float, seed: int) -> PoisonResult:
    """Append ``round(rate * n)`` triggered copies of other classes' examples, labelled ``target``."""
    count = poison_count(rate, len(data))
    pool = (data.y.cpu() != target).nonzero().flatten()
    if len(pool) < count:
        raise DataError(f"{data.name}: {attack} needs {count} examples outside class {target}, found {len(pool)}")
    rows = pool[torch.randperm(len(pool), generator=torch.Generator().manual_seed(seed))[:count]]
    x = trigger.apply(data.x[rows.to(data.x.device)])
    merged, added = append_poisons(data, x, torch.full((count,), target), attack)
    return PoisonResult(attack, merged, added, added=True, target_label=target, trigger=trigger)


@dataclass(frozen=True, kw_only=True)
class BadNets:
    """Gu et al. 2017: a corner patch (or fixed feature values) that sends inputs to ``target``."""

    name: ClassVar[str] = "backdoor"

    target: int = 0  # the label every triggered input should get
    size: int = 3  # side of the square patch in pixels (features, for tabular inputs)
    corner: str = "bottom-right"

    def __call__(self, data: Dataset, *, rate: float, seed: int, model: Classifier | None = None) -> PoisonResult:
        target = check_label(self.target, class_count(data, model), "target")
        trigger = badnets_trigger(data.input_shape, data.bounds, size=self.size, corner=self.corner)
        return _implant(self.name, data, trigger, target, rate=rate, seed=seed)


@dataclass(frozen=True, kw_only=True)
class BlendBackdoor:
    """Chen et al. 2017 blended injection: a seeded noise pattern mixed in at opacity ``alpha``."""

    name: ClassVar[str] = "backdoor-blend"

    target: int = 0
    alpha: float = 0.2  # Chen et al. train with 0.2 (a faint pattern a human reviewer may miss)

    def __call__(self, data: Dataset, *, rate: float, seed: int, model: Classifier | None = None) -> PoisonResult:
        target = check_label(self.target, class_count(data, model), "target")
        trigger = blend_trigger(data.input_shape, data.bounds, alpha=self.alpha, seed=seed)
        return _implant(self.name, data, trigger, target, rate=rate, seed=seed)
