"""PGD adversarial training.

Madry, Makelov, Schmidt, Tsipras & Vladu, "Towards Deep Learning Models Resistant to Adversarial
Attacks", ICLR 2018, https://arxiv.org/abs/1706.06083. Training minimises the loss at the worst
point of the threat ball, as PGD finds it: min_theta E[max_{||delta|| <= eps} CE(f(x + delta), y)].

Arguments:
    steps: PGD steps per batch (10; Madry et al. use 40 on MNIST, 7 on CIFAR-10).
    step_size: absolute step length; ``None`` means 2.5 * eps / steps.

Example::

    result = harden(model, train, method="pgd", eps=0.3, steps=10)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch.nn.functional as F
from torch import Tensor, nn

from bastion.harden.interface import Threat, Trainer
from bastion.harden.perturb import ascend, crafting, random_start, step_length

__all__ = ["PGDTraining"]


@dataclass(frozen=True, kw_only=True)
class PGDTraining(Trainer):
    """Madry et al.'s PGD-AT: cross-entropy on PGD examples (random start) only."""

    name: ClassVar[str] = "pgd"

    steps: int = 10
    step_size: float | None = None

    def loss(self, net: nn.Module, x: Tensor, y: Tensor, threat: Threat) -> Tensor:
        x_adv = self.craft(net, x, y, threat)
        return F.cross_entropy(net(x_adv), y)

    def craft(self, net: nn.Module, x: Tensor, y: Tensor, threat: Threat) -> Tensor:
        """The inner maximisation: PGD on the cross-entropy from a random start."""
        alpha = step_length(self.step_size, threat.eps, self.steps)
        with crafting(net):
            return ascend(
                lambda z: F.cross_entropy(net(z), y, reduction="none"),
                x,
                random_start(x, threat),
                threat,
                steps=self.steps,
                step_size=alpha,
            )
