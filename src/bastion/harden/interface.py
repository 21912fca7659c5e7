"""Hardening's parts: the trainer template, the threat it trains against, and the value types of a run.

A trainer is configuration plus one method: its keyword-only hyper-parameters are stored verbatim
(``PGDTraining(steps=10)``), and :meth:`Trainer.loss` returns the loss of one batch, crafting the
adversarial examples it needs inside. The shared loop (:mod:`bastion.harden.loop`) owns
everything else: copying the model, batches, the optimiser, seeding, the figures per epoch.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from bastion.errors import ConfigError
from bastion.harden import evaluate
from bastion.models.torch import TorchClassifier
from bastion.norms import Norm

__all__ = ["EpochStats", "Figures", "HardenConfig", "HardenResult", "Rejection", "Threat", "Trainer"]


@dataclass(frozen=True, kw_only=True)
class HardenConfig:
    """The loop's settings, shared by every trainer (a trainer's own hyper-parameters live on the trainer)."""

    eps: float = 0.3  # radius of the ball the adversarial examples are drawn from (Madry et al.: 0.3 on MNIST)
    norm: str = "linf"
    epochs: int = 5
    seed: int = 0  # shuffling, random starts and any randomness in the module (dropout)
    batch_size: int = 128
    lr: float = 1e-3  # Adam
    # PGD steps of the robust accuracy measured after each epoch (harden() uses max(10, steps)).
    eval_steps: int = 10


@dataclass(frozen=True)
class Threat:
    """What the adversarial examples of one run may be: norm, radius, input bounds, and the seeded generator."""

    norm: Norm
    eps: float
    bounds: tuple[float, float]
    generator: torch.Generator


@dataclass(frozen=True)
class Rejection:
    """How a reject-class model treats clean and PGD inputs (shares of the evaluation set)."""

    n_examples: int
    clean_rejected: float  # clean inputs the model says look crafted (false alarms)
    clean_accuracy: float  # clean inputs classified correctly and not rejected
    pgd_rejected: float  # PGD inputs rejected
    pgd_correct: float  # PGD inputs not rejected and still classified correctly
    pgd_caught: float  # rejected or correctly classified: the attack failed either way


@dataclass(frozen=True)
class Figures:
    """What one evaluation after an epoch measured."""

    clean_accuracy: float
    robust_accuracy: float
    fgsm_accuracy: float | None = None
    rejection: Rejection | None = None


@dataclass(frozen=True)
class EpochStats:
    """One epoch: accuracy on the evaluation set after it, mean training loss, and training time."""

    epoch: int  # 1-based
    clean_accuracy: float
    robust_accuracy: float  # under PGD at the training eps (reject-class: PGD inputs rejected or correct)
    loss: float  # mean batch loss over the epoch
    seconds: float  # wall time of the epoch's training steps; the evaluation after it is not counted
    fgsm_accuracy: float | None = None  # under FGSM at the training eps (fast FGSM training watches it)


@dataclass(frozen=True)
class HardenResult:
    """A hardened model and the evidence of how it was trained."""

    model: TorchClassifier
    history: tuple[EpochStats, ...]
    seconds: float
    catastrophic_overfitting: bool  # fast FGSM: a collapse was detected and the last good weights restored
    manifest: dict[str, Any]
    rejection: Rejection | None = None  # reject-class training only: the final model's rejection rates


@dataclass(frozen=True, kw_only=True)
class Trainer:
    """Template of every trainer: one batch loss, plus hooks for the model's head and the figures per epoch."""

    name: ClassVar[str] = ""
    # Outputs the trainer adds to the model's K classes (the reject class adds one).
    extra_outputs: ClassVar[int] = 0

    def loss(self, net: nn.Module, x: Tensor, y: Tensor, threat: Threat) -> Tensor:
        """The scalar loss of one batch (in train mode); adversarial examples are crafted inside."""
        raise NotImplementedError

    def check(self) -> None:
        """Validate the shared hyper-parameters, ``steps`` and ``step_size``, where a trainer has them."""
        step_size = getattr(self, "step_size", None)
        if step_size is not None and not step_size > 0:
            raise ConfigError(f"expected step_size > 0, got {step_size}")
        steps = getattr(self, "steps", 1)
        if not steps >= 1:
            raise ConfigError(f"expected steps >= 1, got {steps}")

    def prepare(self, module: nn.Module, num_classes: int) -> nn.Module:
        """The module to train, built from a copy of the input model's (reject-class adds an output)."""
        return module

    def measure(self, model: TorchClassifier, x: Tensor, y: Tensor, config: HardenConfig) -> Figures:
        """Clean accuracy and PGD accuracy at the training eps on the evaluation set."""
        return Figures(
            clean_accuracy=evaluate.clean_accuracy(model, x, y),
            robust_accuracy=evaluate.pgd_accuracy(model, x, y, config),
        )

    def collapsed(self, history: Sequence[EpochStats]) -> bool:
        """Whether training just collapsed (``history`` starts at epoch 0); if so the last good epoch is restored."""
        return False

    def config(self) -> dict[str, Any]:
        """The hyper-parameters, for the manifest and the report."""
        return dataclasses.asdict(self)
