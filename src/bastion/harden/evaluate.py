"""The figures a hardening run reports after each epoch: clean accuracy, and accuracy under Bastion's own PGD and FGSM.

These use the evaluation attacks (:class:`~bastion.attacks.evasion.pgd.PGD` with a random start
and early stopping, :class:`~bastion.attacks.evasion.fgsm.FGSM`), not the lean training-time
loop, so that "robust accuracy" means what it means in ``bastion assess``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import Tensor

from bastion.attacks.evasion.fgsm import FGSM
from bastion.attacks.evasion.pgd import PGD
from bastion.models.interface import Classifier, predict

if TYPE_CHECKING:
    from bastion.harden.interface import HardenConfig

__all__ = ["clean_accuracy", "fgsm_accuracy", "pgd_accuracy", "pgd_inputs"]


def clean_accuracy(model: Classifier, x: Tensor, y: Tensor) -> float:
    """Share of ``x`` classified as ``y``."""
    with model.inference():
        return _share(predict(model, x.to(model.device)) == y.to(model.device))


def pgd_inputs(model: Classifier, x: Tensor, y: Tensor, config: HardenConfig) -> Tensor:
    """PGD examples at the training eps (random start, ``config.eval_steps`` steps, seeded)."""
    attack = PGD(steps=config.eval_steps, early_stop=True)
    return attack(model, x, y, norm=config.norm, eps=config.eps, seed=config.seed).x_adv


def pgd_accuracy(model: Classifier, x: Tensor, y: Tensor, config: HardenConfig) -> float:
    """Share of ``x`` still classified as ``y`` under PGD at the training eps."""
    return clean_accuracy(model, pgd_inputs(model, x, y, config), y)


def fgsm_accuracy(model: Classifier, x: Tensor, y: Tensor, config: HardenConfig) -> float:
    """Share of ``x`` still classified as ``y`` under FGSM at the training eps."""
    result = FGSM()(model, x, y, norm=config.norm, eps=config.eps, seed=config.seed)
    return 1.0 - result.success_rate


def _share(flags: Tensor) -> float:
    return float(flags.float().mean()) if flags.numel() else 0.0
