"""Per-example worst case over a cascade of attacks, in the manner of AutoAttack.

Croce & Hein, "Reliable evaluation of adversarial robustness with an ensemble of diverse
parameter-free attacks", ICML 2020, https://arxiv.org/abs/2003.01690. Each attack in turn sees
only the examples that every earlier attack failed to break; an example counts as robust only if
it survives them all. The standard order is APGD-CE, then targeted APGD (APGD-T), then the
score-based Square attack, which doubles as a check for gradient masking: a point that survives
both gradient attacks but falls to Square means the gradients were misleading.

Arguments:
    attacks: registry names, run in this order.
    options: per-attack keyword options, e.g. ``{"apgd-ce": {"steps": 50}}``.

Example::

    result = Ensemble()(model, x, y, norm="linf", eps=0.3, seed=0)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor

from bastion.attacks.interface import Attack, Ledger, require_eps
from bastion.models.interface import Classifier, Knowledge
from bastion.norms import Norm

__all__ = ["STANDARD_CASCADE", "Ensemble"]

STANDARD_CASCADE = ("apgd-ce", "apgd-t", "square")


@dataclass(frozen=True, kw_only=True)
class Ensemble(Attack):
    """The cascade: each attack attacks only the examples still standing."""

    name: ClassVar[str] = "autoattack"
    norms: ClassVar[tuple[str, ...]] = ("linf", "l2")
    # The least access any default member needs (Square: scores); members the model cannot serve are skipped.
    knowledge: ClassVar[Knowledge] = Knowledge.SCORES

    attacks: tuple[str, ...] = STANDARD_CASCADE
    options: dict[str, dict[str, Any]] = field(default_factory=dict)

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
        from bastion.attacks.registry import make_attack  # the registry lists this class too

        eps = require_eps(eps)
        x_adv = x.clone()
        todo = self._still_correct(model, x, y, targets, ledger)
        for i, name in enumerate(self.attacks):
            if todo.numel() == 0:
                break
            member = make_attack(name, **self.options.get(name, {}))
            if not model.knowledge.covers(member.knowledge):
                continue  # e.g. the gradient attacks against a scores-only model: Square still runs
            seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator, device=x.device)) + i
            tgt = None if targets is None else targets[todo]
            result = member(model, x[todo], y[todo], norm=norm, eps=eps, targets=tgt, seed=seed)
            ledger.forward.index_add_(0, todo, result.queries)
            ledger.backward.index_add_(0, todo, result.gradients)
            x_adv[todo[result.success]] = result.x_adv[result.success]
            todo = todo[~result.success]
        return x_adv

    @staticmethod
    def _still_correct(model: Classifier, x: Tensor, y: Tensor, targets: Tensor | None, ledger: Ledger) -> Tensor:
        with torch.no_grad():
            pred = model.logits(x).argmax(dim=1)
        ledger.charge(None)
        done = pred != y if targets is None else pred == targets
        return (~done).nonzero().squeeze(1)
