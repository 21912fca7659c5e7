"""Clean-label poisoning by feature collision ("Poison Frogs").

Shafahi, Huang, Najibi, Suciu, Studer, Dumitras & Goldstein, "Poison Frogs! Targeted Clean-Label
Poisoning Attacks on Neural Networks", NeurIPS 2018, https://arxiv.org/abs/1804.00792.

The attacker wants one target input ``t`` (a test input, never in the training set) classified
as the base class. Each poison starts from a training example ``b`` of the base class and solves

    p = argmin_x ||f(x) - f(t)||^2 + beta ||x - b||^2

with ``f`` the penultimate-layer features of a white-box reference model, by forward-backward
splitting (the paper's Algorithm 1): a gradient step on the feature term, then the proximal step
of the input term, ``p = (p + lr * beta * b) / (1 + lr * beta)``. The poisons are meant to look
like their bases and keep the base label, so a reviewer sees correctly labelled examples; a model
trained on them learns to put the target's features in the base class. Success is the target
classified as the base class after retraining. ``beta`` is scaled by ``feature_dim / input_dim``,
which makes both terms mean squared differences (the paper scales by ``(2048 / input_dim)^2``
for Inception's 2048 features, a rule that over-weights the feature term on small inputs). Each
poison's step size halves whenever a step would raise its objective, so the objective never rises. ``opacity`` > 0
first blends the target into each base (the paper's "watermarking", section 4.2, which end-to-end
retraining needs).

On small networks such as the demo CNNs the collision is reached but at a price: the poisons move
most of the way to the target in input space (on the 8x8 digits about three quarters of the L2
distance), because these networks' penultimate features leave little room for an imperceptible
collision; the report records both distances.

Example::

    attack = FeatureCollision(target=test.x[3], base_label=1)
    poisoned = attack(train, rate=0.02, seed=0, model=clean_model)
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn

from bastion.attacks.interface import require_at_least
from bastion.data.dataset import Dataset
from bastion.errors import ConfigError, DataError
from bastion.models.interface import Classifier, Knowledge
from bastion.poisoning.interface import PoisonResult, append_poisons, check_label, class_count, poison_count

__all__ = ["FeatureCollision", "penultimate_features"]

logger = logging.getLogger(__name__)

Features = Callable[[Tensor], Tensor]


def penultimate_features(model: Classifier) -> Features:
    """``x -> f(x)``: the input of the model's last ``nn.Linear`` layer (its logits if it has none).

    Refuses a model without gradients: feature collision differentiates through the features.
    """
    module = getattr(model, "module", None)
    if model.knowledge is not Knowledge.WHITE_BOX or not isinstance(module, nn.Module):
        raise ConfigError(
            f"feature collision needs a white-box reference model (gradients through its penultimate layer), "
            f"but the model exposes only {model.knowledge.value}"
        )
    heads = [layer for layer in module.modules() if isinstance(layer, nn.Linear)]
    if not heads:
        logger.info("the reference model has no nn.Linear head; colliding in logit space")
        return model.logits
    head = heads[-1]  # modules() follows registration order, in which a classifier's head comes last

    def features(x: Tensor) -> Tensor:
        seen: list[Tensor] = []
        handle = head.register_forward_pre_hook(lambda _layer, args: seen.append(args[0]))
        try:
            model.logits(x)
        finally:
            handle.remove()
        return seen[-1].flatten(1)

    return features


@dataclass(frozen=True, kw_only=True)
class FeatureCollision:
    """Poison Frogs (Shafahi et al. 2018): base-class examples whose features collide with the target's."""

    name: ClassVar[str] = "feature-collision"

    target: Tensor | None = None  # the one input (shape ``input_shape``) the attacker wants misclassified
    base_label: int = 1  # the class the target should be given; poisons are drawn from it and keep its label
    # Weight of ||p - b||^2 before the feature_dim / input_dim scaling. Tuned on the digits demo, where
    # the poisons' features end closer to the target's than any training example of the target's class.
    beta: float = 25.0
    lr: float = 0.1  # initial step size of the forward (gradient) step; halved per poison when it overshoots
    steps: int = 200
    opacity: float = 0.3  # watermark: blend the target into each base first (the paper's 0.3 for end-to-end retraining)

    def __call__(self, data: Dataset, *, rate: float, seed: int, model: Classifier | None = None) -> PoisonResult:
        count = poison_count(rate, len(data))
        if model is None:
            raise ConfigError(f"{self.name} needs a white-box reference model: pass model=")
        target, features, base_label = self._validate(data, model)
        bases = self._bases(data, base_label, count, seed)
        blended = (1 - self.opacity) * bases + self.opacity * target
        with model.inference():
            goal = features(target.unsqueeze(0).to(model.device)).detach()
            beta = self.beta * goal.shape[1] / target.numel()
            poisons = self._optimise(features, goal, blended.to(model.device), beta, data.bounds)
            details = _distances(features, goal, bases.to(model.device), poisons, target.to(model.device))
            source = int(model.logits(target.unsqueeze(0).to(model.device)).argmax(dim=1))
        model.queries.backward += count * self.steps
        merged, added = append_poisons(data, poisons, torch.full((count,), base_label), self.name)
        return PoisonResult(
            self.name, merged, added, added=True, target_label=base_label, source_label=source,
            target_input=target.detach().cpu().clone(), details=details,
        )  # fmt: skip

    def _validate(self, data: Dataset, model: Classifier) -> tuple[Tensor, Features, int]:
        require_at_least("steps", self.steps, 1)
        if not self.beta >= 0 or not self.lr > 0 or not 0.0 <= self.opacity < 1.0:
            raise ConfigError(
                f"expected beta >= 0, lr > 0 and opacity in [0, 1), got {self.beta}, {self.lr}, {self.opacity}"
            )
        features = penultimate_features(model)
        if self.target is None:
            raise ConfigError(f"{self.name} needs the target input: FeatureCollision(target=test.x[i], base_label=c)")
        if tuple(self.target.shape) != data.input_shape:
            raise DataError(f"the target has shape {tuple(self.target.shape)}, the data's inputs {data.input_shape}")
        base_label = check_label(self.base_label, class_count(data, model), "base_label")
        return self.target.detach().to(data.x.device, data.x.dtype), features, base_label

    def _bases(self, data: Dataset, base_label: int, count: int, seed: int) -> Tensor:
        pool = (data.y.cpu() == base_label).nonzero().flatten()
        if len(pool) < count:
            raise DataError(
                f"{data.name}: {self.name} needs {count} base examples of class {base_label}, found {len(pool)}"
            )
        rows = pool[torch.randperm(len(pool), generator=torch.Generator().manual_seed(seed))[:count]]
        return data.x[rows.to(data.x.device)].clone()

    def _optimise(
        self, features: Features, goal: Tensor, bases: Tensor, beta: float, bounds: tuple[float, float]
    ) -> Tensor:
        """Forward-backward splitting, each poison with its own step size (halved when a step does not help)."""
        poisons = bases.clone()
        step = torch.full((len(bases),), self.lr, device=bases.device)
        current = _objective(features, goal, poisons, bases, beta)
        for _ in range(self.steps):
            grad = _feature_grad(features, goal, poisons)
            shape = (-1,) + (1,) * (bases.dim() - 1)
            forward = poisons - step.view(shape) * grad
            candidate = (forward + (step * beta).view(shape) * bases) / (1 + (step * beta).view(shape))
            candidate = candidate.clamp(*bounds)
            value = _objective(features, goal, candidate, bases, beta)
            better = value <= current
            poisons = torch.where(better.view(shape), candidate, poisons)
            current = torch.where(better, value, current)
            step = torch.where(better, step, step / 2)
        return poisons.detach()


def _feature_grad(features: Features, goal: Tensor, x: Tensor) -> Tensor:
    """Gradient of ``||f(x) - f(t)||^2`` for each row of ``x``."""
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        loss = (features(x) - goal).pow(2).sum()
        (grad,) = torch.autograd.grad(loss, x)
    return grad.detach()


def _objective(features: Features, goal: Tensor, x: Tensor, bases: Tensor, beta: float) -> Tensor:
    """``||f(x) - f(t)||^2 + beta ||x - b||^2`` per poison."""
    with torch.no_grad():
        collision = (features(x) - goal).pow(2).sum(dim=1)
        return collision + beta * (x - bases).flatten(1).pow(2).sum(dim=1)


def _distances(features: Features, goal: Tensor, bases: Tensor, poisons: Tensor, target: Tensor) -> dict[str, float]:
    """Mean feature distances to the target before and after; mean input distances (L2) poison-base, target-base."""
    with torch.no_grad():
        before = (features(bases) - goal).norm(dim=1).mean()
        after = (features(poisons) - goal).norm(dim=1).mean()
    return {
        "feature_distance_before": float(before),
        "feature_distance_after": float(after),
        "input_distance": float((poisons - bases).flatten(1).norm(dim=1).mean()),
        "target_input_distance": float((target - bases).flatten(1).norm(dim=1).mean()),
    }
