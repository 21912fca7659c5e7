"""The Attack template, its result value, and the per-example query ledger.

An attack is configuration plus one call::

    result = PGD(steps=40)(model, x, y, norm="linf", eps=0.3, seed=0)
    result.success.float().mean()   # attack success rate

Hyper-parameters are keyword-only dataclass fields stored verbatim; the model, the data, the
threat (norm and eps), optional targets and the seed come at call time.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from bastion.errors import ConfigError, DataError
from bastion.models.interface import Classifier, Knowledge
from bastion.norms import ConstrainedNorm, Norm, Projection, get_norm

__all__ = ["Attack", "AttackResult", "Ledger", "require_at_least", "require_eps"]

# Slack when checking that a returned point lies inside the eps ball (float32 round-off).
BALL_TOLERANCE = 1e-5


@dataclass(frozen=True)
class AttackResult:
    """What an attack found, per example (all tensors have ``n`` rows, on the model's device)."""

    attack: str
    norm: str
    eps: float | None
    x_adv: Tensor
    success: Tensor  # bool: misclassified (or the target hit), and inside the eps ball if one was given
    predictions: Tensor  # int64: the model's label for x_adv
    distance: Tensor  # float: ||x_adv - x|| in the attack's norm
    queries: Tensor  # int64: forward rows spent on each example, the final check included
    gradients: Tensor  # int64: backward rows spent on each example
    elapsed: float  # seconds of wall time

    @property
    def success_rate(self) -> float:
        return float(self.success.float().mean()) if self.success.numel() else 0.0


def require_eps(eps: float | None) -> float:
    """``eps`` for attacks that always need one (the template checks it before ``_run``)."""
    if eps is None:
        raise ConfigError("this attack needs an epsilon: pass eps > 0")
    return eps


def require_at_least(name: str, value: float, low: float) -> None:
    """Validate a numeric hyper-parameter on first use, showing the value: ``expected steps >= 1, got 0``."""
    if not value >= low:
        raise ConfigError(f"expected {name} >= {low}, got {value}")


class Ledger:
    """Per-example forward and backward counts, charged as the attack runs."""

    def __init__(self, n: int, device: torch.device) -> None:
        self.forward = torch.zeros(n, dtype=torch.int64, device=device)
        self.backward = torch.zeros(n, dtype=torch.int64, device=device)

    def charge(self, idx: Tensor | None, *, forward: int = 1, backward: int = 0) -> None:
        """Charge the examples at ``idx`` (all of them for ``None``)."""
        if idx is None:
            self.forward += forward
            self.backward += backward
        else:
            self.forward.index_add_(0, idx, torch.full_like(idx, forward, dtype=torch.int64))
            if backward:
                self.backward.index_add_(0, idx, torch.full_like(idx, backward, dtype=torch.int64))


@dataclass(frozen=True, kw_only=True)
class Attack:
    """Template for every evasion attack: validation, devices, seeding, final check and timing.

    Subclasses set the class variables and implement :meth:`_run`, which returns adversarial
    inputs for all ``n`` examples and charges its model calls to the ledger.
    """

    name: ClassVar[str] = ""
    norms: ClassVar[tuple[str, ...]] = ("linf", "l2")
    knowledge: ClassVar[Knowledge] = Knowledge.WHITE_BOX
    # A minimal-perturbation attack ignores eps while searching; eps then only judges success.
    minimal: ClassVar[bool] = False
    targeted_only: ClassVar[bool] = False
    untargeted_only: ClassVar[bool] = False

    def __call__(
        self,
        model: Classifier,
        x: Tensor,
        y: Tensor,
        *,
        norm: str | Norm = "linf",
        eps: float | None = None,
        targets: Tensor | None = None,
        seed: int = 0,
        constraints: Projection | None = None,
    ) -> AttackResult:
        """Attack ``x`` (labels ``y``) within ``eps`` in ``norm``; ``constraints`` keep tabular inputs feasible."""
        norm_ = get_norm(norm)
        self._check_call(model, x, y, norm_, eps, targets)
        if constraints is not None:
            norm_ = ConstrainedNorm(inner=norm_, feasible=constraints)
        device = model.device
        x0 = x.detach().to(device=device, dtype=torch.float32).clone()
        y0 = y.detach().to(device=device, dtype=torch.int64).clone()
        t0 = None if targets is None else targets.detach().to(device=device, dtype=torch.int64).clone()
        gen = torch.Generator(device=device).manual_seed(seed)
        ledger = Ledger(x0.shape[0], device)
        start = time.perf_counter()
        with model.inference():
            x_adv = self._run(model, x0, y0, norm=norm_, eps=eps, targets=t0, generator=gen, ledger=ledger)
            x_adv = self._enforce_threat(x_adv.detach(), x0, norm_, eps, model.bounds)
            with torch.no_grad():
                predictions = model.logits(x_adv).argmax(dim=1)
            ledger.charge(None)
        elapsed = time.perf_counter() - start
        distance = norm_.distance(x_adv, x0)
        success = predictions != y0 if t0 is None else predictions == t0
        if eps is not None:
            success &= distance <= eps + BALL_TOLERANCE
        return AttackResult(
            attack=self.name,
            norm=norm_.name,
            eps=eps,
            x_adv=x_adv,
            success=success,
            predictions=predictions,
            distance=distance,
            queries=ledger.forward,
            gradients=ledger.backward,
            elapsed=elapsed,
        )

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
        raise NotImplementedError

    def config(self) -> dict[str, Any]:
        """The hyper-parameters, for reports."""
        return dataclasses.asdict(self)

    def _enforce_threat(
        self, x_adv: Tensor, x: Tensor, norm: Norm, eps: float | None, bounds: tuple[float, float]
    ) -> Tensor:
        # A safety net, not part of any algorithm: the returned point is always a legal input.
        if eps is None or self.minimal:
            clamped = torch.clamp(x_adv, bounds[0], bounds[1])
            return norm.feasible.project(clamped, x) if isinstance(norm, ConstrainedNorm) and norm.feasible else clamped
        return norm.clip(x_adv, x, eps, bounds)

    def _check_call(
        self, model: Classifier, x: Tensor, y: Tensor, norm: Norm, eps: float | None, targets: Tensor | None
    ) -> None:
        if norm.name not in self.norms:
            raise ConfigError(
                f"{self.name} does not support the {norm.name} norm: expected one of {', '.join(self.norms)}"
            )
        if eps is None and not self.minimal:
            raise ConfigError(f"{self.name} needs an epsilon: pass eps > 0")
        if eps is not None:
            span = model.bounds[1] - model.bounds[0]
            if not eps > 0:
                raise ConfigError(f"expected eps > 0, got {eps}")
            if norm.name == "linf" and eps > span:
                raise ConfigError(f"expected eps <= the input range {span} for linf, got {eps}")
        if tuple(x.shape[1:]) != tuple(model.input_shape):
            raise DataError(f"inputs have shape {tuple(x.shape[1:])}, the model expects {model.input_shape}")
        if y.shape != (x.shape[0],):
            raise DataError(f"expected {x.shape[0]} labels, got labels of shape {tuple(y.shape)}")
        if targets is None and self.targeted_only:
            raise ConfigError(f"{self.name} is a targeted attack: pass targets")
        if targets is not None and self.untargeted_only:
            raise ConfigError(f"{self.name} is an untargeted attack: pass no targets")
        if targets is not None and targets.shape != (x.shape[0],):
            raise DataError(f"expected {x.shape[0]} targets, got shape {tuple(targets.shape)}")
        if not model.knowledge.covers(self.knowledge):
            raise ConfigError(
                f"{self.name} needs {self.knowledge.value} access; the model exposes only {model.knowledge.value}"
            )
