"""Auto-PGD (APGD) and its targeted form APGD-T: PGD with momentum and a step size it tunes itself.

Croce & Hein, "Reliable evaluation of adversarial robustness with an ensemble of diverse
parameter-free attacks", ICML 2020, https://arxiv.org/abs/2003.01690 (Sec. 3, Algorithm 1).

Threat: Linf or L2 ball of radius eps around x, intersected with the model's input bounds.

The step size starts at 2 * eps (the L2 step goes along grad / ||grad||) and each step mixes in
momentum 0.75. At the checkpoints w_j = ceil(p_j * steps), with p_0 = 0, p_1 = 0.22 and
p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06), an example halves its step size and restarts
from its best point when (1) fewer than rho of the steps since the last checkpoint raised its
loss, or (2) its step size was not halved at the last checkpoint and its best loss has not moved.

Arguments (``APGD``):
    loss: ``"ce"`` (cross-entropy) or ``"dlr"`` (Difference of Logits Ratio; needs >= 3 classes).
    steps: gradient steps per run (100).
    restarts: runs from fresh random starts; later runs attack only examples still robust (1).
    rho: share of loss-raising steps below which the step size is halved (0.75).
    early_stop: drop an example from the batch as soon as an iterate fools the model (False:
        every example takes every step, and the highest-loss fooling iterate is kept).

``APGDT`` (APGD-T) always maximises the targeted DLR loss (needs >= 4 classes) and adds
``n_target_classes`` (9): it attacks with the classes ranked 2, 3, ... by the clean logits as
targets in turn, each time only the examples still robust. Without ``targets`` success means
any misclassification, as in the paper's robust-accuracy evaluation.

Only examples the model classifies correctly are attacked (one clean forward each). Per
example the result is the highest-loss iterate that fools the model, else the highest-loss
iterate.

Shapes: ``x`` ``(n, *input_shape)``, ``y`` ``(n,)``. Optional ``targets`` ``(n,)`` make APGD
targeted (ce: lower the target's cross-entropy; dlr: targeted DLR) and give APGD-T its only target.

Example::

    result = APGD(loss="dlr")(model, x, y, norm="linf", eps=8 / 255, seed=0)
    result = APGDT(n_target_classes=9)(model, x, y, norm="l2", eps=0.5, seed=0)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from typing import ClassVar, Literal

import torch
from torch import Tensor

from bastion.attacks.interface import Attack, Ledger, require_at_least, require_eps
from bastion.attacks.losses import cross_entropy, dlr, dlr_targeted
from bastion.errors import ConfigError
from bastion.models.interface import Classifier, value_and_grad
from bastion.norms import Norm

__all__ = ["APGD", "APGDT", "checkpoints"]

MOMENTUM = 0.75  # alpha in the paper
INITIAL_STEP = 2.0  # eta^(0) = 2 * eps

# A per-example loss from (logits, labels, targets or None).
Objective = Callable[[Tensor, Tensor, Tensor | None], Tensor]


def _ce(logits: Tensor, y: Tensor, target: Tensor | None) -> Tensor:
    return cross_entropy(logits, y) if target is None else -cross_entropy(logits, target)


def _dlr(logits: Tensor, y: Tensor, target: Tensor | None) -> Tensor:
    return dlr(logits, y) if target is None else dlr_targeted(logits, y, target)


_OBJECTIVES: dict[str, Objective] = {"ce": _ce, "dlr": _dlr}


def checkpoints(steps: int) -> list[int]:
    """The iterations w_j = ceil(p_j * steps), j >= 1, at which the step size may be halved (Sec. 3.2)."""
    p = [0.0, 0.22]
    while p[-1] < 1.0:
        p.append(p[-1] + max(p[-1] - p[-2] - 0.03, 0.06))
    # The small slack keeps 0.22 * 100 at 22, not 23 (float round-off).
    ws = {math.ceil(pj * steps - 1e-9) for pj in p[1:]}
    return sorted(w for w in ws if 0 < w <= steps)


@dataclass(frozen=True, kw_only=True)
class APGD(Attack):
    """Croce & Hein's APGD with the cross-entropy (APGD-CE) or DLR (APGD-DLR) loss."""

    norms: ClassVar[tuple[str, ...]] = ("linf", "l2")

    loss: Literal["ce", "dlr"] = "ce"
    steps: int = 100
    restarts: int = 1
    rho: float = 0.75
    early_stop: bool = False

    @property
    def name(self) -> str:  # type: ignore[override]
        """``apgd-ce`` or ``apgd-dlr``, the registry's names: the loss is part of what reports call the attack."""
        return f"apgd-{self.loss}"

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
        self._check(model)
        core = _Core(norm, require_eps(eps), model.bounds, self.steps, self.rho, self.early_stop)
        goal = _Goal(_OBJECTIVES[self.loss], hit_target=targets is not None)
        found = _Found.clean(model, goal, x, y, targets, ledger)
        core.restarts(model, goal, found, x, y, targets, self.restarts, generator, ledger)
        return found.x

    def _check(self, model: Classifier) -> None:
        if self.loss not in _OBJECTIVES:
            raise ConfigError(f"unknown loss {self.loss!r}: expected one of {', '.join(sorted(_OBJECTIVES))}")
        if self.loss == "dlr" and model.num_classes < 3:
            raise ConfigError(f"the DLR loss needs at least 3 classes, the model has {model.num_classes}")
        _check_schedule(self.steps, self.restarts, self.rho)


@dataclass(frozen=True, kw_only=True)
class APGDT(Attack):
    """Croce & Hein's APGD-T: APGD on the targeted DLR loss, over the top-ranked wrong classes."""

    name: ClassVar[str] = "apgd-t"
    norms: ClassVar[tuple[str, ...]] = ("linf", "l2")

    n_target_classes: int = 9
    steps: int = 100
    restarts: int = 1
    rho: float = 0.75
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
        self._check(model)
        core = _Core(norm, require_eps(eps), model.bounds, self.steps, self.rho, self.early_stop)
        goal = _Goal(_dlr, hit_target=targets is not None)
        found = _Found.clean(model, goal, x, y, targets, ledger)
        for target in self._targets(found.clean_logits, targets, model.num_classes):
            core.restarts(model, goal, found, x, y, target, self.restarts, generator, ledger)
        return found.x

    def _targets(self, clean_logits: Tensor, targets: Tensor | None, num_classes: int) -> list[Tensor]:
        """The caller's targets, or the classes ranked 2, 3, ... by the clean logits."""
        if targets is not None:
            return [targets]
        ranked = clean_logits.argsort(dim=1, descending=True)
        return [ranked[:, i] for i in range(1, min(self.n_target_classes, num_classes - 1) + 1)]

    def _check(self, model: Classifier) -> None:
        if model.num_classes < 4:
            raise ConfigError(f"the targeted DLR loss needs at least 4 classes, the model has {model.num_classes}")
        require_at_least("n_target_classes", self.n_target_classes, 1)
        _check_schedule(self.steps, self.restarts, self.rho)


def _check_schedule(steps: int, restarts: int, rho: float) -> None:
    require_at_least("steps", steps, 1)
    require_at_least("restarts", restarts, 1)
    if not 0.0 < rho <= 1.0:
        raise ConfigError(f"expected 0 < rho <= 1, got {rho}")


@dataclass(frozen=True)
class _Goal:
    """What a run maximises, and what counts as a hit: the target predicted, or just any label but y."""

    objective: Objective
    hit_target: bool

    def hit(self, logits: Tensor, y: Tensor, target: Tensor | None) -> Tensor:
        pred = logits.argmax(dim=1)
        return pred == target if self.hit_target and target is not None else pred != y


def _better(hit: Tensor, loss: Tensor, old_hit: Tensor, old_loss: Tensor) -> Tensor:
    """Keep-best order: a hit beats a miss; between two hits or two misses the higher loss wins."""
    return (hit & ~old_hit) | ((hit == old_hit) & (loss > old_loss))


def _rows(t: Tensor, like: Tensor) -> Tensor:
    """``t`` of shape ``(n,)`` shaped to broadcast over the feature axes of ``like``."""
    return t.reshape((-1,) + (1,) * (like.dim() - 1))


def _pick(mask: Tensor, new: Tensor, old: Tensor) -> Tensor:
    return torch.where(_rows(mask, new), new, old)


@dataclass
class _Found:
    """The best point found so far for every example of the batch, with its loss and whether it hits."""

    x: Tensor
    loss: Tensor
    hit: Tensor
    clean_logits: Tensor

    @classmethod
    def clean(
        cls, model: Classifier, goal: _Goal, x: Tensor, y: Tensor, targets: Tensor | None, ledger: Ledger
    ) -> _Found:
        """Start from x itself; examples the model already gets wrong (or already send to the target) are done."""
        with torch.no_grad():
            logits = model.logits(x)
        ledger.charge(None)
        loss = torch.full((x.shape[0],), -math.inf, device=x.device)
        return cls(x.clone(), loss, goal.hit(logits, y, targets), logits)

    def todo(self) -> Tensor:
        return (~self.hit).nonzero().squeeze(1)

    def offer(self, ids: Tensor, x: Tensor, loss: Tensor, hit: Tensor) -> None:
        take = _better(hit, loss, self.hit[ids], self.loss[ids])
        sel = ids[take]
        self.x[sel], self.loss[sel], self.hit[sel] = x[take], loss[take], hit[take]


@dataclass(frozen=True)
class _Core:
    """One threat and one schedule; runs APGD on the examples still robust."""

    norm: Norm
    eps: float
    bounds: tuple[float, float]
    steps: int
    rho: float
    early_stop: bool

    def restarts(
        self,
        model: Classifier,
        goal: _Goal,
        found: _Found,
        x: Tensor,
        y: Tensor,
        target: Tensor | None,
        restarts: int,
        generator: torch.Generator,
        ledger: Ledger,
    ) -> None:
        """Up to ``restarts`` runs from fresh random starts, each on the examples not yet fooled."""
        for _ in range(restarts):
            ids = found.todo()
            if ids.numel() == 0:
                return
            t = None if target is None else target[ids]
            run = _Run.start(self, model, goal, x[ids], y[ids], t, ids, generator, ledger)
            self.run(model, goal, found, run, ledger)

    def run(self, model: Classifier, goal: _Goal, found: _Found, run: _Run, ledger: Ledger) -> None:
        """Algorithm 1: momentum steps, keep-best, and the step-size checkpoints."""
        marks, last = set(checkpoints(self.steps)), 0
        for k in range(1, self.steps + 1):
            run.evaluate(model, goal, self.advance(run, 1.0 if k == 1 else MOMENTUM), ledger)
            if k in marks:
                run.checkpoint(self.rho, k - last)
                last = k
            if self.early_stop and bool(run.out_hit.any()):
                done = run.out_hit
                found.offer(run.ids[done], run.out[done], run.out_loss[done], run.out_hit[done])
                run = run.rows(~done)
                if run.ids.numel() == 0:
                    return
        found.offer(run.ids, run.out, run.out_loss, run.out_hit)

    def advance(self, run: _Run, alpha: float) -> Tensor:
        """z = P(x_k + eta * ascent(grad)); x_{k+1} = P(x_k + alpha (z - x_k) + (1 - alpha)(x_k - x_{k-1}))."""
        eta = _rows(run.step, run.x_adv)
        z = self.norm.clip(run.x_adv + eta * self.norm.ascent(run.grad), run.x, self.eps, self.bounds)
        moved = run.x_adv + alpha * (z - run.x_adv) + (1.0 - alpha) * (run.x_adv - run.x_prev)
        return self.norm.clip(moved, run.x, self.eps, self.bounds)


@dataclass
class _Run:
    """The state of one APGD run over the examples still in its batch (row i is example ``ids[i]``)."""

    ids: Tensor
    x: Tensor
    y: Tensor
    target: Tensor | None
    x_adv: Tensor  # x^(k)
    x_prev: Tensor  # x^(k-1), for the momentum term
    grad: Tensor  # gradient of the loss at x^(k)
    loss: Tensor  # f(x^(k))
    step: Tensor  # eta, per example
    x_max: Tensor  # the highest-loss iterate, where a halving restarts
    grad_max: Tensor
    loss_max: Tensor
    out: Tensor  # what the run returns: keep-best in the order of _better
    out_loss: Tensor
    out_hit: Tensor
    ups: Tensor  # steps since the last checkpoint that raised the loss
    check_loss: Tensor  # loss_max at the last checkpoint
    check_halved: Tensor  # whether eta was halved at the last checkpoint

    @classmethod
    def start(
        cls,
        core: _Core,
        model: Classifier,
        goal: _Goal,
        x: Tensor,
        y: Tensor,
        target: Tensor | None,
        ids: Tensor,
        generator: torch.Generator,
        ledger: Ledger,
    ) -> _Run:
        """x^(0): a uniform draw from the ball, and the loss and gradient there."""
        x0 = core.norm.clip(x + core.norm.random_start(x, core.eps, generator), x, core.eps, core.bounds)
        logits, loss, grad = value_and_grad(model, x0, lambda z: goal.objective(z, y, target))
        ledger.charge(ids, forward=1, backward=1)
        return cls(
            ids=ids, x=x, y=y, target=target,
            x_adv=x0, x_prev=x0, grad=grad, loss=loss, step=torch.full_like(loss, INITIAL_STEP * core.eps),
            x_max=x0, grad_max=grad, loss_max=loss,
            out=x0, out_loss=loss, out_hit=goal.hit(logits, y, target),
            ups=torch.zeros_like(y), check_loss=loss, check_halved=torch.zeros_like(y, dtype=torch.bool),
        )  # fmt: skip

    def evaluate(self, model: Classifier, goal: _Goal, x_new: Tensor, ledger: Ledger) -> None:
        """Move to ``x_new``: its loss and gradient, the count of loss-raising steps, and keep-best."""
        logits, loss, grad = value_and_grad(model, x_new, lambda z: goal.objective(z, self.y, self.target))
        ledger.charge(self.ids, forward=1, backward=1)
        hit = goal.hit(logits, self.y, self.target)
        self.ups = self.ups + (loss > self.loss).long()
        best = loss > self.loss_max
        self.x_max, self.grad_max = _pick(best, x_new, self.x_max), _pick(best, grad, self.grad_max)
        self.loss_max = torch.where(best, loss, self.loss_max)
        keep = _better(hit, loss, self.out_hit, self.out_loss)
        self.out, self.out_loss = _pick(keep, x_new, self.out), torch.where(keep, loss, self.out_loss)
        self.out_hit = self.out_hit | hit
        self.x_prev, self.x_adv, self.grad, self.loss = self.x_adv, x_new, grad, loss

    def checkpoint(self, rho: float, span: int) -> None:
        """Halve eta under condition 1 or 2 (Sec. 3.2) and restart those examples from x_max."""
        # As written in the paper: a strict "<" in condition 1, and condition 2 already at the first
        # checkpoint (the authors' code uses "<=" and starts condition 2 at the second).
        oscillating = self.ups < rho * span  # condition 1
        stalled = ~self.check_halved & (self.loss_max <= self.check_loss)  # condition 2
        halve = oscillating | stalled
        self.step = torch.where(halve, self.step / 2, self.step)
        # The restart drops the momentum: x_{k-1} := x_k := x_max.
        self.x_adv, self.x_prev = _pick(halve, self.x_max, self.x_adv), _pick(halve, self.x_max, self.x_prev)
        self.grad, self.loss = _pick(halve, self.grad_max, self.grad), torch.where(halve, self.loss_max, self.loss)
        self.check_halved, self.check_loss, self.ups = halve, self.loss_max, torch.zeros_like(self.ups)

    def rows(self, keep: Tensor) -> _Run:
        """The same run on the rows where ``keep`` is true."""
        picked = {f.name: getattr(self, f.name)[keep] for f in fields(self) if f.name != "target"}
        return replace(self, target=None if self.target is None else self.target[keep], **picked)
