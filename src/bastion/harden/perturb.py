"""The inner maximisation of adversarial training: projected steepest ascent on a loss, on Bastion's norms.

Why not :class:`~bastion.attacks.evasion.pgd.PGD` itself: the evaluation attack validates every
call, keeps a per-example query ledger, keeps the best misclassified iterate, stops examples early
and ends with a checking forward pass; all of that is right for measuring robustness and is pure
overhead inside a training step, which runs it on every batch of every epoch (the issue's budget
is an epoch in at most 1.1x (steps + 1) clean epochs). Training also needs losses the attack does
not take (TRADES' KL term, the K-class logits of a reject-class model). The geometry is shared:
the random start, the ascent direction and the projection are the norm objects' own methods.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch
from torch import Tensor, nn

from bastion.harden.interface import Threat

__all__ = ["ascend", "crafting", "random_start", "step_length"]


def step_length(step_size: float | None, eps: float, steps: int) -> float:
    """``step_size`` when given, else Madry et al.'s 2.5 * eps / steps."""
    return step_size if step_size is not None else 2.5 * eps / max(1, steps)


def random_start(x: Tensor, threat: Threat) -> Tensor:
    """A point drawn uniformly from the ball around ``x`` (clipped to the bounds by :func:`ascend`)."""
    return x + threat.norm.random_start(x, threat.eps, threat.generator)


def ascend(
    loss: Callable[[Tensor], Tensor], x: Tensor, start: Tensor, threat: Threat, *, steps: int, step_size: float
) -> Tensor:
    """``steps`` ascent steps on the per-example ``loss`` from ``start``, projected into the ball and bounds.

    Returns the last iterate, detached. Only the input's gradient is computed: the model's
    parameter gradients are left untouched for the training step that follows.
    """
    x_adv = threat.norm.clip(start.detach(), x, threat.eps, threat.bounds)
    for _ in range(steps):
        x_adv.requires_grad_(True)
        with torch.enable_grad():
            (grad,) = torch.autograd.grad(loss(x_adv).sum(), x_adv)
        step = x_adv.detach() + step_size * threat.norm.ascent(grad)
        x_adv = threat.norm.clip(step, x, threat.eps, threat.bounds)
    return x_adv.detach()


@contextlib.contextmanager
def crafting(net: nn.Module) -> Iterator[None]:
    """Eval mode and frozen parameters while adversarial examples are crafted; both restored after.

    The examples attack the model as deployed (dropout off, batch-norm on its running statistics),
    and batch-norm statistics are updated only by the batches the model is trained on. Frozen
    parameters spare autograd the bookkeeping for weight gradients no one asks for (~5% of an
    attack step on the CPU).
    """
    modes = [(m, m.training) for m in net.modules()]
    trainable = [p for p in net.parameters() if p.requires_grad]
    for m, _ in modes:
        m.training = False
    for p in trainable:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for m, training in modes:
            m.training = training
        for p in trainable:
            p.requires_grad_(True)
