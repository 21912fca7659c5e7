"""Carlini & Wagner's L2 attack: the smallest L2 perturbation that fools the model, by optimisation.

Carlini & Wagner, "Towards Evaluating the Robustness of Neural Networks", IEEE S&P 2017,
https://arxiv.org/abs/1608.04644 (Sec. V-A).

Threat: minimal L2 perturbation inside the model's input bounds; ``eps``, when given, only
judges success. The bounds are built in by the change of variables
x' = lo + (hi - lo) * (tanh(w) + 1) / 2, so that any w is a legal input. Adam minimises
||x' - x||_2^2 + c * f(x') over w, with the margin loss f(x') = max(Z_y - max_{i!=y} Z_i, -kappa)
(targeted: max(max_{i!=t} Z_i - Z_t, -kappa)). A binary search over c, per example, looks for
the smallest c that still succeeds; the smallest successful perturbation seen is returned, or
x itself where none was found.

Arguments:
    steps: Adam steps per value of c (1000; far fewer often suffice).
    binary_search_steps: values of c tried per example (9). While no c has succeeded, c is
        multiplied by 10; after that it bisects between the largest failing and the smallest
        successful c.
    initial_const: the first c (1e-2).
    lr: Adam's learning rate in w-space (1e-2).
    confidence: kappa, the logit margin a success must clear (0).
    abort_early: stop optimising an example for the current c once its loss has not improved
        (by 0.01%) over steps / 10 iterations.

Shapes: ``x`` ``(n, *input_shape)``, ``y`` ``(n,)``; optional ``targets`` ``(n,)`` make it targeted.

Example::

    result = CarliniWagnerL2(steps=100, binary_search_steps=5)(model, x, y, norm="l2")
    result.distance.median()   # the typical smallest L2 perturbation
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from typing import ClassVar

import torch
from torch import Tensor

from bastion.attacks.interface import Attack, Ledger, require_at_least
from bastion.attacks.losses import cw_margin
from bastion.errors import ConfigError
from bastion.models.interface import Classifier, value_and_grad
from bastion.norms import Norm

__all__ = ["CarliniWagnerL2"]

ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8
# How far inside (-1, 1) x is mapped before atanh, so that inputs on the bounds stay finite.
TANH_MARGIN = 1e-6
# The relative improvement over steps / 10 iterations below which an example aborts early.
ABORT_IMPROVEMENT = 1e-4


@dataclass(frozen=True, kw_only=True)
class CarliniWagnerL2(Attack):
    """Carlini & Wagner's L2 attack: Adam in tanh space, with a binary search on the constant c."""

    name: ClassVar[str] = "cw"
    norms: ClassVar[tuple[str, ...]] = ("l2",)
    minimal: ClassVar[bool] = True

    steps: int = 1000
    binary_search_steps: int = 9
    initial_const: float = 1e-2
    lr: float = 1e-2
    confidence: float = 0.0
    abort_early: bool = True

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
        self._check()
        label = y if targets is None else targets
        space = _TanhSpace(*model.bounds)
        smallest = _Smallest(x.clone(), torch.full((x.shape[0],), math.inf, device=x.device))
        search = _ConstSearch.start(x.shape[0], self.initial_const, x.device)
        for _ in range(self.binary_search_steps):
            descent = _Descent.start(x, label, search.const, space)
            hit = self._minimise(model, space, descent, targets is not None, smallest, ledger)
            search = search.update(hit)
        return smallest.x

    def _minimise(
        self,
        model: Classifier,
        space: _TanhSpace,
        descent: _Descent,
        targeted: bool,
        smallest: _Smallest,
        ledger: Ledger,
    ) -> Tensor:
        """Adam on ||x' - x||^2 + c f(x') at fixed c; returns which examples succeeded at this c."""
        hit = torch.zeros(smallest.l2.shape, dtype=torch.bool, device=smallest.l2.device)
        period = max(1, self.steps // 10)
        for i in range(self.steps):
            x_adv, loss, success, grad_w = self._objective(model, space, descent, targeted, ledger)
            smallest.offer(descent.ids, x_adv, descent.x, success)
            hit[descent.ids[success]] = True
            descent.adam_step(grad_w, self.lr, i + 1)
            if self.abort_early and i % period == 0:
                descent = descent.without_stalled(loss)
                if descent.ids.numel() == 0:
                    break
        return hit

    def _objective(
        self, model: Classifier, space: _TanhSpace, descent: _Descent, targeted: bool, ledger: Ledger
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """x', the loss ||x' - x||^2 + c f(x'), whether x' succeeds with margin kappa, and the gradient in w."""
        w = descent.w0 + descent.dw
        x_adv = space.to_x(w)

        def scaled_margin_loss(logits: Tensor) -> Tensor:
            return -descent.const * cw_margin(logits, descent.label, kappa=self.confidence, targeted=targeted)

        logits, c_f, grad_x = value_and_grad(model, x_adv, scaled_margin_loss)
        ledger.charge(descent.ids, forward=1, backward=1)
        delta = x_adv - descent.x
        loss = delta.flatten(1).pow(2).sum(dim=1) + c_f
        success = cw_margin(logits, descent.label, kappa=math.inf, targeted=targeted) > self.confidence
        grad_w = (2 * delta + grad_x) * space.dx_dw(w)
        return x_adv, loss, success, grad_w

    def _check(self) -> None:
        require_at_least("steps", self.steps, 1)
        require_at_least("binary_search_steps", self.binary_search_steps, 1)
        require_at_least("confidence", self.confidence, 0.0)
        for name, value in (("initial_const", self.initial_const), ("lr", self.lr)):
            if not value > 0:
                raise ConfigError(f"expected {name} > 0, got {value}")


@dataclass(frozen=True)
class _TanhSpace:
    """x = lo + (hi - lo) * (tanh(w) + 1) / 2: every w maps inside the bounds (C&W's change of variables)."""

    low: float
    high: float

    def to_w(self, x: Tensor) -> Tensor:
        unit = (x - self.low) / (self.high - self.low) * 2 - 1
        return torch.atanh(unit.clamp(-1 + TANH_MARGIN, 1 - TANH_MARGIN))

    def to_x(self, w: Tensor) -> Tensor:
        return self.low + (self.high - self.low) * (torch.tanh(w) + 1) / 2

    def dx_dw(self, w: Tensor) -> Tensor:
        return (self.high - self.low) / 2 * (1 - torch.tanh(w).pow(2))


@dataclass
class _Smallest:
    """The smallest successful perturbation per example so far (x itself and inf until one is found)."""

    x: Tensor
    l2: Tensor

    def offer(self, ids: Tensor, x_adv: Tensor, x: Tensor, success: Tensor) -> None:
        l2 = (x_adv - x).flatten(1).norm(dim=1)
        better = success & (l2 < self.l2[ids])
        sel = ids[better]
        self.x[sel], self.l2[sel] = x_adv[better], l2[better]


@dataclass(frozen=True)
class _ConstSearch:
    """Per-example binary search on c between the largest failing and smallest successful value."""

    const: Tensor
    lower: Tensor
    upper: Tensor

    @classmethod
    def start(cls, n: int, initial: float, device: torch.device) -> _ConstSearch:
        const = torch.full((n,), initial, device=device)
        return cls(const, torch.zeros_like(const), torch.full_like(const, math.inf))

    def update(self, hit: Tensor) -> _ConstSearch:
        """Success lowers the upper bound; failure raises the lower one, or c *= 10 while no c has succeeded."""
        upper = torch.where(hit, torch.minimum(self.upper, self.const), self.upper)
        lower = torch.where(hit, self.lower, torch.maximum(self.lower, self.const))
        const = torch.where(torch.isfinite(upper), (lower + upper) / 2, self.const * 10)
        return _ConstSearch(const, lower, upper)


@dataclass
class _Descent:
    """Adam's state at one c for the examples still optimising (row i is example ``ids[i]``)."""

    ids: Tensor
    x: Tensor
    label: Tensor
    const: Tensor  # c, per example
    w0: Tensor  # x in w-space
    dw: Tensor  # the variable Adam moves, starting at 0
    m: Tensor  # Adam's first moment
    v: Tensor  # Adam's second moment
    best_loss: Tensor  # the loss at the last early-abort check

    @classmethod
    def start(cls, x: Tensor, label: Tensor, const: Tensor, space: _TanhSpace) -> _Descent:
        ids = torch.arange(x.shape[0], device=x.device)
        zeros = torch.zeros_like(x)
        inf = torch.full((x.shape[0],), math.inf, device=x.device)
        return cls(ids, x, label, const, space.to_w(x), zeros, zeros, zeros, inf)

    def adam_step(self, grad: Tensor, lr: float, t: int) -> None:
        """One Adam step (Kingma & Ba 2015) on every row; ``t`` counts from 1."""
        b1, b2 = ADAM_BETAS
        self.m = b1 * self.m + (1 - b1) * grad
        self.v = b2 * self.v + (1 - b2) * grad.pow(2)
        m_hat, v_hat = self.m / (1 - b1**t), self.v / (1 - b2**t)
        self.dw = self.dw - lr * m_hat / (v_hat.sqrt() + ADAM_EPS)

    def without_stalled(self, loss: Tensor) -> _Descent:
        """Drop the rows whose loss has not improved since the last check; remember the loss of the rest."""
        finite = torch.isfinite(self.best_loss)
        limit = torch.where(finite, self.best_loss - ABORT_IMPROVEMENT * self.best_loss.abs(), self.best_loss)
        improved = loss < limit
        kept = replace(self, best_loss=loss)
        if bool(improved.all()):
            return kept
        return replace(kept, **{f.name: getattr(kept, f.name)[improved] for f in fields(kept)})
