"""Label flipping: the attacker changes training labels and nothing else.

Three ways to choose what to flip, each changing exactly ``round(rate * n)`` labels:

- :class:`RandomLabelFlip`: uniformly chosen examples, each to a uniformly chosen other class
  (random label noise, the baseline every smarter flip is measured against);
- :class:`TargetedLabelFlip`: examples of one class relabelled as another (``source -> target``),
  which aims at the source class's accuracy;
- :class:`LossLabelFlip`: the flips a reference model trained on clean data finds most costly, after
  Biggio, Nelson & Laskov, "Support Vector Machines Under Adversarial Label Noise", ACML 2011
  (https://proceedings.mlr.press/v20/biggio11.html) and Xiao, Xiao & Eckert, "Adversarial Label
  Flips Attack on Support Vector Machines", ECAI 2012 (https://doi.org/10.3233/978-1-61499-098-7-870):
  the attacker spends its budget on the labels whose change raises the learner's loss the most.

Example::

    flipped = TargetedLabelFlip(source=1, target=7)(train, rate=0.05, seed=0)
    flipped.data.y[flipped.indices]   # all 7
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import ClassVar

import torch
from torch import Tensor

from bastion.data.dataset import Dataset
from bastion.errors import ConfigError, DataError
from bastion.models.interface import Classifier, Knowledge
from bastion.poisoning.interface import PoisonResult, check_label, class_count, poison_count

__all__ = ["LossLabelFlip", "RandomLabelFlip", "TargetedLabelFlip"]

# Rows scored by the reference model per forward pass.
SCORE_BATCH = 1024


def _flipped(
    attack: str, data: Dataset, rows: Tensor, labels: Tensor, *, source: int | None = None, target: int | None = None
) -> PoisonResult:
    """The result of giving the examples at ``rows`` the new ``labels`` (nothing else changes)."""
    order = torch.argsort(rows)
    rows, labels = rows[order], labels[order]
    y = data.y.clone()
    y[rows.to(y.device)] = labels.to(y.device, y.dtype)
    poisoned = replace(data, y=y, name=f"{data.name}+{attack}")
    return PoisonResult(attack, poisoned, rows.cpu(), added=False, target_label=target, source_label=source)


def _two_classes(data: Dataset, model: Classifier | None) -> int:
    classes = class_count(data, model)
    if classes < 2:
        raise DataError(f"{data.name}: label flipping needs at least 2 classes, got {classes}")
    return classes


@dataclass(frozen=True, kw_only=True)
class RandomLabelFlip:
    """Flip ``round(rate * n)`` uniformly chosen labels, each to a uniformly chosen other class."""

    name: ClassVar[str] = "label-flip"

    def __call__(self, data: Dataset, *, rate: float, seed: int, model: Classifier | None = None) -> PoisonResult:
        count = poison_count(rate, len(data))
        classes = _two_classes(data, model)
        gen = torch.Generator().manual_seed(seed)
        rows = torch.randperm(len(data), generator=gen)[:count]
        shift = torch.randint(1, classes, (count,), generator=gen)  # 1..k-1: never the same class
        return _flipped(self.name, data, rows, (data.y[rows].cpu() + shift) % classes)


@dataclass(frozen=True, kw_only=True)
class TargetedLabelFlip:
    """Relabel ``round(rate * n)`` randomly chosen examples of class ``source`` as ``target``.

    ``rate`` is a share of the whole training set, like every attack's, so the source class must
    hold at least ``round(rate * n)`` examples.
    """

    name: ClassVar[str] = "label-flip-targeted"

    source: int = 0  # the class whose accuracy the attacker wants to drop
    target: int = 1  # the label its examples get

    def __call__(self, data: Dataset, *, rate: float, seed: int, model: Classifier | None = None) -> PoisonResult:
        count = poison_count(rate, len(data))
        classes = _two_classes(data, model)
        source = check_label(self.source, classes, "source")
        target = check_label(self.target, classes, "target")
        if source == target:
            raise ConfigError(f"expected target != source, got both {source}")
        pool = (data.y.cpu() == source).nonzero().flatten()
        if len(pool) < count:
            raise DataError(
                f"{data.name}: {self.name} at rate {rate} flips {count} labels, but class {source} "
                f"has only {len(pool)} examples; expected a rate <= {len(pool) / len(data):.3g}"
            )
        rows = pool[torch.randperm(len(pool), generator=torch.Generator().manual_seed(seed))[:count]]
        return _flipped(self.name, data, rows, torch.full((count,), target), source=source, target=target)


@dataclass(frozen=True, kw_only=True)
class LossLabelFlip:
    """Flip the ``round(rate * n)`` labels whose change costs a clean reference model the most.

    Each example's candidate flip is the wrong class of highest cross-entropy under the
    reference model (the least plausible label); the examples whose candidate flip has the
    highest loss are flipped. These are the confidently classified points far from the decision
    boundary, whose flips drag a retrained boundary furthest (Biggio et al. 2011). Ties are broken
    by a seeded permutation. Needs ``model``: a classifier trained on the clean data.
    """

    name: ClassVar[str] = "label-flip-loss"

    def __call__(self, data: Dataset, *, rate: float, seed: int, model: Classifier | None = None) -> PoisonResult:
        count = poison_count(rate, len(data))
        if model is None:
            raise ConfigError(f"{self.name} needs a reference model trained on the clean data: pass model=")
        if not model.knowledge.covers(Knowledge.SCORES):
            raise ConfigError(f"{self.name} needs the reference model's scores, but it exposes only labels")
        classes = _two_classes(data, model)
        check_label(int(data.y.max()), classes, f"{data.name}'s largest label")
        losses = _label_losses(model, data.x)
        losses.scatter_(1, data.y.cpu().view(-1, 1), float("-inf"))  # the true label is no flip
        best_loss, best_label = losses.max(dim=1)
        # A seeded shuffle before the stable sort breaks ties (e.g. saturated losses) at random.
        shuffle = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))
        ranked = shuffle[torch.argsort(best_loss[shuffle], descending=True, stable=True)]
        rows = ranked[:count]
        return _flipped(self.name, data, rows, best_label[rows])


def _label_losses(model: Classifier, x: Tensor) -> Tensor:
    """Cross-entropy of every label for every input, ``(n, classes)``, on the CPU."""
    out = []
    with torch.no_grad(), model.inference():
        for start in range(0, len(x), SCORE_BATCH):
            logits = model.logits(x[start : start + SCORE_BATCH].to(model.device))
            out.append(-torch.log_softmax(logits.float(), dim=1).cpu())
    return torch.cat(out)
