"""Transfer attacks: adversarial examples crafted white-box on a surrogate, replayed against the target.

Papernot et al., "Practical Black-Box Attacks against Machine Learning", AsiaCCS 2017,
https://arxiv.org/abs/1602.02697. The target sees one query per example: the final replay.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from torch import Tensor

from bastion.attacks.interface import Attack
from bastion.models.interface import Classifier, predict

__all__ = ["TransferResult", "transfer_attack"]


@dataclass(frozen=True)
class TransferResult:
    """Per example: fooled the surrogate, fooled the target; and the replayed inputs."""

    x_adv: Tensor
    surrogate_success: Tensor  # bool
    target_success: Tensor  # bool
    target_queries: int
    elapsed: float

    @property
    def transfer_rate(self) -> float:
        """Share of the examples that fooled the surrogate and also fool the target."""
        fooled = self.surrogate_success
        if not bool(fooled.any()):
            return 0.0
        return float((self.target_success & fooled).float().sum() / fooled.float().sum())

    @property
    def success_rate(self) -> float:
        return float(self.target_success.float().mean()) if self.target_success.numel() else 0.0


def transfer_attack(
    attack: Attack,
    surrogate: Classifier,
    target: Classifier,
    x: Tensor,
    y: Tensor,
    *,
    norm: str = "linf",
    eps: float | None = None,
    seed: int = 0,
) -> TransferResult:
    """Run ``attack`` on the surrogate, then ask the target about each adversarial input once."""
    started = time.perf_counter()
    crafted = attack(surrogate, x, y, norm=norm, eps=eps, seed=seed)
    before = target.queries.forward
    with target.inference(), torch.no_grad():
        labels = predict(target, crafted.x_adv.to(target.device)).cpu()
    fooled = labels != y.cpu()
    return TransferResult(
        x_adv=crafted.x_adv,
        surrogate_success=crafted.success.cpu(),
        target_success=fooled,
        target_queries=target.queries.forward - before,
        elapsed=time.perf_counter() - started,
    )
