"""TRADES: a trade-off between clean accuracy and robustness.

Zhang, Yu, Jiao, Xing, El Ghaoui & Jordan, "Theoretically Principled Trade-off between Robustness
and Accuracy", ICML 2019, https://arxiv.org/abs/1901.08573. The loss is the clean cross-entropy
plus ``beta`` times the KL divergence between the model's outputs at x and at the point of the
ball where they differ most: CE(f(x), y) + beta * max_{||x' - x|| <= eps} KL(f(x) || f(x')).
The inner maximisation starts at x + 0.001 * N(0, I), as the authors' code does.

Arguments:
    steps: ascent steps on the KL term per batch (10; the paper uses 40 on MNIST).
    step_size: absolute step length; ``None`` means 2.5 * eps / steps.
    beta: weight of the robustness term (6.0, the paper's choice; larger favours robustness).

Example::

    result = harden(model, train, method="trades", eps=0.3, beta=6.0)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bastion.errors import ConfigError
from bastion.harden.interface import Threat, Trainer
from bastion.harden.perturb import ascend, crafting, step_length

__all__ = ["TRADES"]

# Scale of the Gaussian start of the inner maximisation (Zhang et al.'s code).
START_SCALE = 0.001


@dataclass(frozen=True, kw_only=True)
class TRADES(Trainer):
    """Zhang et al.'s TRADES: clean cross-entropy plus beta times the worst-case KL in the ball."""

    name: ClassVar[str] = "trades"

    steps: int = 10
    step_size: float | None = None
    beta: float = 6.0

    def check(self) -> None:
        super().check()
        if not self.beta >= 0:
            raise ConfigError(f"expected beta >= 0, got {self.beta}")

    def loss(self, net: nn.Module, x: Tensor, y: Tensor, threat: Threat) -> Tensor:
        x_adv = self.craft(net, x, threat)
        logits = net(x)
        robust = _kl(logits, net(x_adv)).mean()
        return F.cross_entropy(logits, y) + self.beta * robust

    def craft(self, net: nn.Module, x: Tensor, threat: Threat) -> Tensor:
        """The point of the ball whose outputs differ most (in KL) from the outputs at ``x``."""
        alpha = step_length(self.step_size, threat.eps, self.steps)
        noise = torch.randn(x.shape, generator=threat.generator, device=x.device, dtype=x.dtype)
        with crafting(net):
            with torch.no_grad():
                clean = net(x)
            return ascend(
                lambda z: _kl(clean, net(z)), x, x + START_SCALE * noise, threat, steps=self.steps, step_size=alpha
            )


def _kl(clean_logits: Tensor, adv_logits: Tensor) -> Tensor:
    """Per-example KL(softmax(clean) || softmax(adv))."""
    log_p = F.log_softmax(clean_logits, dim=1)
    log_q = F.log_softmax(adv_logits, dim=1)
    return (log_p.exp() * (log_p - log_q)).sum(dim=1)
