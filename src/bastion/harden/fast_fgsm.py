"""Fast adversarial training: FGSM from a random start, with a watch for catastrophic overfitting.

Wong, Rice & Kolter, "Fast is better than free: Revisiting adversarial training", ICLR 2020,
https://arxiv.org/abs/2001.03994. One FGSM step of 1.25 * eps from a uniform random start in the
ball, then projection: about the cost of two clean epochs per epoch, and close to PGD training's
robustness, as long as the run does not overfit catastrophically. In that failure the model
learns to defeat the single FGSM step (FGSM accuracy stays high, even rises) while its accuracy
under PGD falls to near zero within an epoch (the paper's Sec. 5.1; more likely with larger
steps, without the random start, or with longer training).

What this trainer does about it: after every epoch the loop measures PGD and FGSM accuracy on the
held-out evaluation set; on a collapse (:func:`catastrophic_overfitting`) it **stops and restores
the weights of the last good epoch** (the paper's early stopping), and the result says so
(``HardenResult.catastrophic_overfitting``; the manifest names the epoch restored). The
collapsed epoch stays in the history as the evidence.

Arguments:
    step_size: absolute FGSM step; ``None`` means 1.25 * eps (the paper's choice).
    random_start: start from a uniform draw in the ball (the fix that makes FGSM training work).

Example::

    result = harden(model, train, method="fgsm-rs", eps=0.3, epochs=5)
    result.catastrophic_overfitting   # True: stopped early, last good weights restored
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch.nn.functional as F
from torch import Tensor, nn

from bastion.harden import evaluate
from bastion.harden.interface import EpochStats, Figures, HardenConfig, Threat, Trainer
from bastion.harden.perturb import ascend, crafting, random_start
from bastion.models.torch import TorchClassifier

__all__ = ["COLLAPSE_DROP", "FGSM_GAP", "FastFGSM", "catastrophic_overfitting"]

# A collapse: PGD accuracy falls more than 20 points below the best earlier epoch (Wong et al.
# stop on a 20-point drop of PGD accuracy on a batch) ...
COLLAPSE_DROP = 0.2
# ... while FGSM accuracy stays at least 30 points above it: the model beats one step, not the ball.
FGSM_GAP = 0.3
# Step of fast FGSM training as a multiple of eps (Wong et al.).
STEP_RATIO = 1.25


@dataclass(frozen=True, kw_only=True)
class FastFGSM(Trainer):
    """Wong et al.'s FGSM training with random start, stopped and rolled back on catastrophic overfitting."""

    name: ClassVar[str] = "fgsm-rs"

    step_size: float | None = None
    random_start: bool = True

    def loss(self, net: nn.Module, x: Tensor, y: Tensor, threat: Threat) -> Tensor:
        alpha = self.step_size if self.step_size is not None else STEP_RATIO * threat.eps
        start = random_start(x, threat) if self.random_start else x
        with crafting(net):
            x_adv = ascend(
                lambda z: F.cross_entropy(net(z), y, reduction="none"), x, start, threat, steps=1, step_size=alpha
            )
        return F.cross_entropy(net(x_adv), y)

    def collapsed(self, history: Sequence[EpochStats]) -> bool:
        return catastrophic_overfitting(history)

    def measure(self, model: TorchClassifier, x: Tensor, y: Tensor, config: HardenConfig) -> Figures:
        """Clean, PGD and FGSM accuracy: the gap between the last two reveals a collapse."""
        figures = super().measure(model, x, y, config)
        return Figures(
            clean_accuracy=figures.clean_accuracy,
            robust_accuracy=figures.robust_accuracy,
            fgsm_accuracy=evaluate.fgsm_accuracy(model, x, y, config),
        )


def catastrophic_overfitting(history: Sequence[EpochStats]) -> bool:
    """Whether the last epoch collapsed: PGD accuracy fell sharply while FGSM accuracy stayed high.

    ``history`` starts with the model as it was before training (epoch 0), so that a collapse in
    the first epoch is seen too. "Fell sharply" is at least :data:`COLLAPSE_DROP` below the best
    earlier epoch; "stayed high" is at least :data:`FGSM_GAP` above PGD accuracy. An epoch without
    an FGSM figure, or without an earlier one to compare with, never counts as collapsed.
    """
    last = history[-1] if history else None
    if last is None or last.fgsm_accuracy is None or len(history) < 2:
        return False
    best = max(stats.robust_accuracy for stats in history[:-1])
    fell = last.robust_accuracy <= best - COLLAPSE_DROP
    return fell and last.fgsm_accuracy - last.robust_accuracy >= FGSM_GAP
