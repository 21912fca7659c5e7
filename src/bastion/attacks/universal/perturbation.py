"""Universal adversarial perturbation: one small pattern, added to any input, that fools the model on most.

Moosavi-Dezfooli, Fawzi, Fawzi & Frossard, "Universal adversarial perturbations", CVPR 2017,
https://arxiv.org/abs/1610.08401, found such patterns by aggregating DeepFool steps; we use the
stochastic-gradient formulation of Shafahi et al., "Universal Adversarial Training", AAAI 2020,
https://arxiv.org/abs/1812.03705: ascend the batch loss in the perturbation, project onto the
eps ball after every step. Every input plus the perturbation is clipped to the model's bounds.

Threat: one perturbation ``v`` with ``||v|| <= eps`` (Linf or L2) shared by all inputs.

Arguments:
    epochs: passes over the training inputs (5).
    batch_size: inputs per step (128).
    step_size: step as a fraction of eps (0.1); the step is the norm's steepest ascent direction.
    target: class to send every input to; ``None`` for untargeted.

Example::

    result = UniversalPerturbation()(model, train.x, train.y, norm="linf", eps=0.2, seed=0)
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from bastion.attacks.universal.interface import UniversalResult, fooling_rate
from bastion.errors import ConfigError, DataError
from bastion.models.interface import Classifier, value_and_grad
from bastion.norms import Norm, get_norm

__all__ = ["UniversalPerturbation"]


@dataclass(frozen=True, kw_only=True)
class UniversalPerturbation:
    """Learn one perturbation inside the eps ball that fools the model on most inputs."""

    epochs: int = 5
    batch_size: int = 128
    step_size: float = 0.1
    target: int | None = None

    name = "universal-perturbation"

    def __call__(
        self, model: Classifier, x: Tensor, y: Tensor, *, norm: str | Norm = "linf", eps: float, seed: int = 0
    ) -> UniversalResult:
        norm_ = get_norm(norm)
        self._check(model, x, eps)
        started = time.perf_counter()
        before = model.queries.snapshot()
        gen = torch.Generator(device=model.device).manual_seed(seed)
        v = torch.zeros((1, *model.input_shape), device=model.device)
        with model.inference():
            for _ in range(self.epochs):
                order = torch.randperm(x.shape[0], generator=gen, device=model.device)
                for i in range(math.ceil(x.shape[0] / self.batch_size)):
                    idx = order[i * self.batch_size : (i + 1) * self.batch_size]
                    v = self._step(model, v, x.to(model.device)[idx], y.to(model.device)[idx], norm_, eps)
        pattern = v[0].detach()
        lo, hi = model.bounds
        train = fooling_rate(model, x, y, lambda xs, _g: (xs + pattern).clamp(lo, hi), seed=seed)
        fwd, bwd = model.queries.snapshot()
        return UniversalResult(
            self.name, pattern, train, fwd - before[0], bwd - before[1], time.perf_counter() - started
        )

    def _check(self, model: Classifier, x: Tensor, eps: float) -> None:
        if tuple(x.shape[1:]) != tuple(model.input_shape):
            raise DataError(f"inputs have shape {tuple(x.shape[1:])}, the model expects {model.input_shape}")
        if not eps > 0:
            raise ConfigError(f"expected eps > 0, got {eps}")
        if self.epochs <= 0 or self.batch_size <= 0 or not self.step_size > 0:
            raise ConfigError(
                f"expected epochs, batch_size and step_size > 0, got {self.epochs}, {self.batch_size}, {self.step_size}"
            )
        if self.target is not None and not 0 <= self.target < model.num_classes:
            raise ConfigError(f"expected a target class in 0..{model.num_classes - 1}, got {self.target}")

    def _step(self, model: Classifier, v: Tensor, x: Tensor, y: Tensor, norm: Norm, eps: float) -> Tensor:
        """Ascend the mean loss of the batch in v, then project v back onto the ball."""
        label, sign = (y, 1.0) if self.target is None else (torch.full_like(y, self.target), -1.0)
        lo, hi = model.bounds

        def objective(logits: Tensor) -> Tensor:
            return sign * F.cross_entropy(logits, label, reduction="none")

        _, _, grad = value_and_grad(model, (x + v).clamp(lo, hi), objective)
        # d/dv of the summed loss is the sum of the per-input gradients (clipping aside).
        direction = norm.ascent(grad.sum(dim=0, keepdim=True))
        return norm.project(v + self.step_size * eps * direction, eps)
