"""What every poisoning attack shares: the call protocol, the trigger value object and the result.

A poisoning attack is configuration plus one call on the *training* data::

    result = BadNets(target=0)(train, rate=0.1, seed=0)
    model = recipe.fit(result.data, seed=0)
    triggered = result.trigger.apply(test.x)

``rate`` is always a share of the ``n`` training examples the attack is given, so curves of
different attacks share an axis: an attack changes (or appends) exactly ``round(rate * n)``
examples, whose rows in ``result.data`` are ``result.indices``. The input is never mutated.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor

from bastion.data.dataset import Dataset
from bastion.errors import ConfigError, DataError
from bastion.models.interface import Classifier

__all__ = [
    "PoisonAttack",
    "PoisonResult",
    "Trigger",
    "append_poisons",
    "check_label",
    "class_count",
    "poison_count",
]


@dataclass(frozen=True)
class Trigger:
    """``x' = (1 - alpha * mask) * x + alpha * mask * pattern``, applied to any batch of inputs.

    A BadNets patch is a mask over a corner with ``alpha = 1``; a blended trigger is a full mask
    with ``alpha < 1``; a tabular trigger is a mask over a few features with fixed values.
    ``pattern`` and ``mask`` have the shape of one input.
    """

    pattern: Tensor
    mask: Tensor
    alpha: float = 1.0
    kind: str = "patch"

    def apply(self, x: Tensor) -> Tensor:
        """A triggered copy of the batch ``x`` of shape ``(n, *pattern.shape)``."""
        if tuple(x.shape[1:]) != tuple(self.pattern.shape):
            raise DataError(f"the trigger fits inputs of shape {tuple(self.pattern.shape)}, got {tuple(x.shape[1:])}")
        weight = self.alpha * self.mask.to(device=x.device, dtype=x.dtype)
        return (1 - weight) * x + weight * self.pattern.to(device=x.device, dtype=x.dtype)

    @property
    def features(self) -> int:
        """How many input features the trigger touches."""
        return int((self.mask > 0).sum())


@dataclass(frozen=True)
class PoisonResult:
    """The poisoned training set, which of its rows the attacker made, and what the attacker wants."""

    attack: str
    data: Dataset
    indices: Tensor  # int64, sorted: rows of ``data`` that were changed or added
    added: bool  # True when the poisons were appended to the data, False when examples were changed in place
    # The label the attacker wants: a flip's or backdoor's target, a feature collision's base class.
    target_label: int | None = None
    # The class whose test accuracy the attack aims at: a targeted flip's source, a collision target's class.
    source_label: int | None = None
    trigger: Trigger | None = None  # backdoors: apply it to test inputs to send them to ``target_label``
    target_input: Tensor | None = None  # feature collision: the one test input it wants misclassified
    details: Mapping[str, float] = field(default_factory=dict)  # attack-specific figures, JSON numbers

    @property
    def count(self) -> int:
        return int(self.indices.numel())


@runtime_checkable
class PoisonAttack(Protocol):
    """Poisons a training set; the reference ``model`` is for attacks that need one (white-box ones)."""

    def __call__(self, data: Dataset, *, rate: float, seed: int, model: Classifier | None = None) -> PoisonResult: ...


def poison_count(rate: float, n: int) -> int:
    """``round(rate * n)``, refusing a rate outside (0, 1) or one that poisons nothing."""
    if not 0.0 < rate < 1.0:
        raise ConfigError(f"expected a poison rate in (0, 1), got {rate}")
    count = round(rate * n)
    if count == 0:
        raise ConfigError(f"a poison rate of {rate} poisons no example of {n}; expected a rate >= {0.5 / n:.2g}")
    return count


def class_count(data: Dataset, model: Classifier | None) -> int:
    """The number of classes: the model's, else the data's named classes, else its largest label + 1."""
    if model is not None:
        return model.num_classes
    if data.class_names:
        return len(data.class_names)
    return int(data.y.max()) + 1


def check_label(value: int, classes: int, what: str) -> int:
    """``value`` if it is a class in ``[0, classes)``, else a ConfigError naming it."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < classes:
        raise ConfigError(f"expected {what} to be a class in [0, {classes - 1}], got {value!r}")
    return value


def append_poisons(data: Dataset, x: Tensor, y: Tensor, name: str) -> tuple[Dataset, Tensor]:
    """``data`` with the poisons ``(x, y)`` appended, and the indices of the appended rows."""
    lo, hi = data.bounds
    poisons = x.detach().to(data.x.device, data.x.dtype).clamp(lo, hi)
    merged = replace(
        data,
        x=torch.cat([data.x, poisons]),
        y=torch.cat([data.y, y.to(data.y.device, data.y.dtype)]),
        name=f"{data.name}+{name}",
    )
    return merged, torch.arange(len(data), len(merged), dtype=torch.int64)
