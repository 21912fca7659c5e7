"""DeepFool: step to the nearest boundary of the model's local linearisation until the label flips.

Moosavi-Dezfooli, Fawzi & Frossard, "DeepFool: a simple and accurate method to fool deep neural
networks", CVPR 2016, https://arxiv.org/abs/1511.04599 (Algorithm 2, Sec. 3.3 for Lp).

Threat: minimal L2 or Linf perturbation inside the model's input bounds; ``eps``, when given,
only judges success. Untargeted only.

At each step, for every candidate class k the gap f'_k = Z_k - Z_y and its gradient w'_k give a
linearised boundary at Lp distance |f'_k| / ||w'_k||_q (q the dual norm: 2 for L2, 1 for Linf).
The closest one, l, sets the step r = (|f'_l| / ||w'_l||_q + 1e-4) * u_l, with u_l the unit
steepest-ascent direction of w'_l (w'_l / ||w'_l||_2 for L2, sign(w'_l) for Linf). The steps add
up to r_tot and the iterate is x + (1 + overshoot) * r_tot, clipped to the bounds.

Arguments:
    steps: the most linearisation steps per example (50).
    overshoot: how far past the linearised boundary to go, as a share of r_tot (0.02).
    candidates: classes considered, the true one included, taken by the clean logits (10).

Cost: each step spends one forward and one backward row per example for the first candidate
class, then, for the examples still correctly classified, one more per remaining candidate.
With fewer candidates than classes, one clean forward ranks them.

Shapes: ``x`` ``(n, *input_shape)``, ``y`` ``(n,)``.

Example::

    result = DeepFool(steps=50, overshoot=0.02)(model, x, y, norm="l2")
    result.distance.median()
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import ClassVar

import torch
from torch import Tensor

from bastion.attacks.interface import Attack, Ledger, require_at_least
from bastion.models.interface import Classifier, value_and_grad
from bastion.norms import Norm

__all__ = ["DeepFool"]

# Added to each step's distance so that the iterate leaves the boundary rather than lands on it.
STEP_SLACK = 1e-4


@dataclass(frozen=True, kw_only=True)
class DeepFool(Attack):
    """Moosavi-Dezfooli et al.'s DeepFool for L2 and Linf."""

    name: ClassVar[str] = "deepfool"
    norms: ClassVar[tuple[str, ...]] = ("l2", "linf")
    minimal: ClassVar[bool] = True
    untargeted_only: ClassVar[bool] = True

    steps: int = 50
    overshoot: float = 0.02
    candidates: int = 10

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
        require_at_least("steps", self.steps, 1)
        require_at_least("overshoot", self.overshoot, 0.0)
        require_at_least("candidates", self.candidates, 2)
        others = self._other_classes(model, x, y, ledger)
        x_adv, r_tot = x.clone(), torch.zeros_like(x)
        active = torch.arange(x.shape[0], device=x.device)
        for _ in range(self.steps):
            active, gaps, grads = _linearise(model, x_adv[active], y[active], others[active], active, ledger)
            if active.numel() == 0:
                break
            r_tot[active] += _closest_boundary_step(gaps, grads, norm)
            x_adv[active] = torch.clamp(x[active] + (1 + self.overshoot) * r_tot[active], *model.bounds)
        return x_adv

    def _other_classes(self, model: Classifier, x: Tensor, y: Tensor, ledger: Ledger) -> Tensor:
        """The ``candidates - 1`` classes other than y, highest clean logit first; shape ``(n, k)``."""
        n, classes = x.shape[0], model.num_classes
        k = min(self.candidates, classes) - 1
        if k == classes - 1:  # every class takes part: no ranking needed
            every = torch.arange(classes, device=x.device).expand(n, classes)
            return every[every != y[:, None]].reshape(n, k)
        with torch.no_grad():
            logits = model.logits(x)
        ledger.charge(None)
        return logits.scatter(1, y[:, None], float("-inf")).topk(k, dim=1).indices


def _linearise(
    model: Classifier, x: Tensor, y: Tensor, others: Tensor, ids: Tensor, ledger: Ledger
) -> tuple[Tensor, Tensor, Tensor]:
    """The examples still classified as y, with their gaps f'_k ``(m, k)`` and gradients w'_k ``(m, k, ...)``.

    The first candidate's pass also gives the logits that tell which examples are done; only the
    others pay for the remaining candidates.
    """
    logits, first_gap, first_grad = value_and_grad(model, x, partial(_gap, k=others[:, 0], y=y))
    ledger.charge(ids, forward=1, backward=1)
    robust = logits.argmax(dim=1) == y
    x, y, others, ids = x[robust], y[robust], others[robust], ids[robust]
    gaps, grads = [first_gap[robust]], [first_grad[robust]]
    if ids.numel() == 0:
        return ids, gaps[0][:, None], grads[0][:, None]
    for j in range(1, others.shape[1]):
        _, g, w = value_and_grad(model, x, partial(_gap, k=others[:, j], y=y))
        gaps.append(g)
        grads.append(w)
    ledger.charge(ids, forward=others.shape[1] - 1, backward=others.shape[1] - 1)
    return ids, torch.stack(gaps, dim=1), torch.stack(grads, dim=1)


def _gap(logits: Tensor, *, k: Tensor, y: Tensor) -> Tensor:
    """f'_k = Z_k - Z_y, per example."""
    return logits.gather(1, k[:, None]).squeeze(1) - logits.gather(1, y[:, None]).squeeze(1)


def _closest_boundary_step(gaps: Tensor, grads: Tensor, norm: Norm) -> Tensor:
    """r = (|f'_l| / ||w'_l||_q + 1e-4) * u_l for the closest linearised boundary l (Algorithm 2, Sec. 3.3)."""
    m, k = gaps.shape
    flat = grads.reshape(m * k, -1)
    unit = norm.ascent(flat)  # the unit-norm direction that raises f'_k fastest
    dual = (flat * unit).sum(dim=1).reshape(m, k)  # ||w'_k||_q
    distance = gaps.abs() / dual.clamp_min(1e-12)
    closest = distance.argmin(dim=1)
    rows = torch.arange(m, device=gaps.device)
    step = distance[rows, closest] + STEP_SLACK
    return step.reshape((-1,) + (1,) * (grads.dim() - 2)) * unit.reshape(grads.shape)[rows, closest]
