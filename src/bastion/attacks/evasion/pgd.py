"""Projected Gradient Descent (iterated FGSM with random start and projection).

Madry, Makelov, Schmidt, Tsipras & Vladu, "Towards Deep Learning Models Resistant to Adversarial
Attacks", ICLR 2018, https://arxiv.org/abs/1706.06083.

Threat: Linf, L2 or L1 ball of radius eps around x, intersected with the model's input bounds.

Arguments:
    steps: gradient steps per restart (40).
    step_size: absolute step length; ``None`` means ``rel_step_size * eps``.
    rel_step_size: step as a fraction of eps when ``step_size`` is None (2.5 / steps, Madry et al.).
    random_start: start from a uniform draw in the ball rather than from x.
    restarts: independent runs; later ones attack only examples the earlier ones did not break.
    early_stop: stop stepping an example once it is misclassified (robust-accuracy evaluation).
        With ``False`` every example takes every step; of the misclassified iterates the one with
        the highest loss is kept (it transfers best), else the last iterate.

Shapes: ``x`` ``(n, *input_shape)``, ``y`` ``(n,)``; optional ``targets`` ``(n,)`` make it targeted.

Example::

    result = PGD(steps=40, step_size=0.01)(model, x, y, norm="linf", eps=0.3, seed=0)
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from bastion.attacks.interface import Attack, Ledger, require_eps
from bastion.attacks.losses import cross_entropy
from bastion.models.interface import Classifier, value_and_grad
from bastion.norms import Norm

__all__ = ["PGD"]


@dataclass(frozen=True, kw_only=True)
class PGD(Attack):
    """Madry et al.'s PGD with random start, restarts and optional early stopping."""

    name: ClassVar[str] = "pgd"
    norms: ClassVar[tuple[str, ...]] = ("linf", "l2", "l1")

    steps: int = 40
    step_size: float | None = None
    rel_step_size: float | None = None
    random_start: bool = True
    restarts: int = 1
    early_stop: bool = False

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
        best = x.clone()
        todo = torch.arange(x.shape[0], device=x.device)
        for _ in range(max(1, self.restarts)):
            if todo.numel() == 0:
                break
            tgt = None if targets is None else targets[todo]
            x_run, fooled = self._one_run(model, x[todo], y[todo], tgt, norm, eps, generator, ledger, todo)
            best[todo] = x_run
            todo = todo[~fooled]
        return best

    def _one_run(
        self,
        model: Classifier,
        x: Tensor,
        y: Tensor,
        targets: Tensor | None,
        norm: Norm,
        eps: float,
        generator: torch.Generator,
        ledger: Ledger,
        ids: Tensor,
    ) -> tuple[Tensor, Tensor]:
        """One restart on the given examples; returns the kept points and which of them fool the model."""
        alpha = self._alpha(eps)
        label, sign = (y, 1.0) if targets is None else (targets, -1.0)
        x_adv = x + norm.random_start(x, eps, generator) if self.random_start else x.clone()
        x_adv = norm.clip(x_adv, x, eps, model.bounds)
        kept, fooled = x_adv.clone(), torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
        kept_loss = torch.full((x.shape[0],), -torch.inf, device=x.device)
        active: Tensor | None = None  # None: every example (no indexing, no device sync)
        for _ in range(self.steps):
            sub = _Sub(active)
            xa, la = sub(x_adv), sub(label)
            logits, loss, grad = value_and_grad(model, xa, functools.partial(_signed_ce, label=la, sign=sign))
            ledger.charge(sub(ids), forward=1, backward=1)
            hit = _fools(logits, sub(y), None if targets is None else sub(targets))
            stepped = norm.clip(xa + alpha * norm.ascent(grad), sub(x), eps, model.bounds)
            k, kl, f = _keep_best(sub(kept), sub(kept_loss), sub(fooled), xa, loss, hit, stepped)
            kept, kept_loss, fooled = sub.put(kept, k), sub.put(kept_loss, kl), sub.put(fooled, f)
            x_adv = sub.put(x_adv, stepped)
            if self.early_stop:
                active = (~fooled).nonzero().squeeze(1)
                if active.numel() == 0:
                    break
        return kept, self._final_check(model, kept, y, targets, fooled, ledger, ids)

    def _final_check(
        self,
        model: Classifier,
        kept: Tensor,
        y: Tensor,
        targets: Tensor | None,
        fooled: Tensor,
        ledger: Ledger,
        ids: Tensor,
    ) -> Tensor:
        """Whether the last step fooled the examples not yet known to be fooled (needed only between restarts)."""
        if self.restarts <= 1:
            return fooled
        rest = (~fooled).nonzero().squeeze(1)
        if rest.numel():
            with torch.no_grad():
                pred = model.logits(kept[rest]).argmax(dim=1)
            ledger.charge(ids[rest])
            fooled = fooled.clone()
            fooled[rest] = pred != y[rest] if targets is None else pred == targets[rest]
        return fooled

    def _alpha(self, eps: float) -> float:
        if self.step_size is not None:
            return self.step_size
        rel = self.rel_step_size if self.rel_step_size is not None else 2.5 / max(1, self.steps)
        return rel * eps


class _Sub:
    """Selects the rows still under attack, or every row when ``active`` is None."""

    def __init__(self, active: Tensor | None) -> None:
        self.active = active

    def __call__(self, t: Tensor) -> Tensor:
        return t if self.active is None else t[self.active]

    def put(self, full: Tensor, part: Tensor) -> Tensor:
        if self.active is None:
            return part
        full[self.active] = part
        return full


def _signed_ce(logits: Tensor, *, label: Tensor, sign: float) -> Tensor:
    return sign * cross_entropy(logits, label)


def _fools(logits: Tensor, y: Tensor, targets: Tensor | None) -> Tensor:
    pred = logits.argmax(dim=1)
    return pred != y if targets is None else pred == targets


def _keep_best(
    kept: Tensor, kept_loss: Tensor, fooled: Tensor, before: Tensor, loss: Tensor, hit: Tensor, after: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """Keep-best: the highest-loss misclassified iterate so far; examples never fooled follow the newest iterate."""
    shape = (-1,) + (1,) * (before.dim() - 1)
    better = hit & (~fooled | (loss > kept_loss))
    kept = torch.where(better.reshape(shape), before, kept)
    kept_loss = torch.where(better, loss, kept_loss)
    fooled = fooled | hit
    return torch.where(fooled.reshape(shape), kept, after), kept_loss, fooled
