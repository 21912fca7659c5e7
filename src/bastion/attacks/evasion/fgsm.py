"""Fast Gradient Sign Method.

Goodfellow, Shlens & Szegedy, "Explaining and Harnessing Adversarial Examples", ICLR 2015,
https://arxiv.org/abs/1412.6572. One step of size eps along the steepest-ascent direction of the
cross-entropy loss: ``sign(grad)`` for Linf (the original), ``grad / ||grad||`` for L2 (the
"fast gradient method").

Arguments: none beyond the threat (norm, eps) and optional targets, which turn the step into a
descent on the loss of the target class. Shapes: ``x`` ``(n, *input_shape)``, ``y`` ``(n,)``.

Example::

    result = FGSM()(model, x, y, norm="linf", eps=0.1)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from bastion.attacks.interface import Attack, Ledger, require_eps
from bastion.attacks.losses import cross_entropy
from bastion.models.interface import Classifier, value_and_grad
from bastion.norms import Norm

__all__ = ["FGSM"]


@dataclass(frozen=True, kw_only=True)
class FGSM(Attack):
    """One signed-gradient step of size eps."""

    name: ClassVar[str] = "fgsm"
    norms: ClassVar[tuple[str, ...]] = ("linf", "l2", "l1")

    def _run(
        self,
        model: Classifier,
        x: Tensor,
        y: Tensor,
        *,
        norm: Norm,
        eps: float | None,
        targets: Tensor | None,
        generator: torch.Generator,
        ledger: Ledger,
    ) -> Tensor:
        eps = require_eps(eps)
        label, sign = (y, 1.0) if targets is None else (targets, -1.0)
        _, _, grad = value_and_grad(model, x, lambda z: sign * cross_entropy(z, label))
        ledger.charge(None, forward=1, backward=1)
        return norm.clip(x + eps * norm.ascent(grad), x, eps, model.bounds)
