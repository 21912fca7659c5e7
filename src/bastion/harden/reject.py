"""Training with an extra "adversarial" reject class, so that the model can say an input looks crafted.

Grosse, Manoharan, Papernot, Backes & McDaniel, "On the (Statistical) Detection of Adversarial
Examples", 2017, https://arxiv.org/abs/1702.06280 (an outlier class trained on adversarial
examples; Hosseini et al. 2017's "NULL label" is the same idea). The model gets K + 1 outputs: the
last ``nn.Linear`` with K outputs is widened by one row (the K class rows keep their weights, the new
row starts at zero); each batch trains on the clean inputs with their labels and on PGD examples
labelled K. At inference an argmax of K means "rejected: this input looks crafted";
:func:`predict_with_reject` gives the K-class label and the reject flag apart.

The PGD examples (in training and in the figures) attack the K class logits, as an attacker
unaware of the detector would. An attacker who also pushes the reject logit down is stronger:
the rejection rates are those of a non-adaptive attack, and the report says so.

Arguments:
    steps: PGD steps per batch (10).
    step_size: absolute step length; ``None`` means 2.5 * eps / steps.

Example::

    result = harden(model, train, method="reject-class", eps=0.3)
    labels, rejected = predict_with_reject(result.model, x)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bastion.errors import ModelError
from bastion.harden import evaluate
from bastion.harden.interface import Figures, HardenConfig, Rejection, Threat, Trainer
from bastion.harden.perturb import ascend, crafting, random_start, step_length
from bastion.models.torch import TorchClassifier

__all__ = ["RejectClass", "class_view", "predict_with_reject", "rejection_rates", "with_reject_class"]


@dataclass(frozen=True, kw_only=True)
class RejectClass(Trainer):
    """Clean inputs with their labels plus PGD examples labelled K, on a model with K + 1 outputs."""

    name: ClassVar[str] = "reject-class"
    extra_outputs: ClassVar[int] = 1

    steps: int = 10
    step_size: float | None = None

    def prepare(self, module: nn.Module, num_classes: int) -> nn.Module:
        return with_reject_class(module, num_classes)

    def loss(self, net: nn.Module, x: Tensor, y: Tensor, threat: Threat) -> Tensor:
        x_adv = self.craft(net, x, y, threat)
        logits = net(torch.cat([x, x_adv]))
        reject = logits.shape[1] - 1  # K: the last output
        return F.cross_entropy(logits, torch.cat([y, torch.full_like(y, reject)]))

    def craft(self, net: nn.Module, x: Tensor, y: Tensor, threat: Threat) -> Tensor:
        """PGD on the cross-entropy of the K class logits (the reject logit, the last, ignored), from a random start."""
        alpha = step_length(self.step_size, threat.eps, self.steps)
        with crafting(net):
            return ascend(
                lambda z: F.cross_entropy(net(z)[:, :-1], y, reduction="none"),
                x,
                random_start(x, threat),
                threat,
                steps=self.steps,
                step_size=alpha,
            )

    def measure(self, model: TorchClassifier, x: Tensor, y: Tensor, config: HardenConfig) -> Figures:
        """Clean accuracy (a rejected clean input counts as wrong); robust: PGD inputs rejected or correct."""
        rates = rejection_rates(model, x, y, config)
        return Figures(clean_accuracy=rates.clean_accuracy, robust_accuracy=rates.pgd_caught, rejection=rates)


def with_reject_class(module: nn.Module, num_classes: int) -> nn.Module:
    """``module`` with its last ``nn.Linear`` of ``num_classes`` outputs widened by a reject row (in place).

    Rebuild a saved reject-class model with ``with_reject_class(factory(), K)`` before loading its weights.
    """
    found = [(name, m) for name, m in module.named_modules() if isinstance(m, nn.Linear)]
    found = [(name, m) for name, m in found if m.out_features == num_classes]
    if not found:
        raise ModelError(
            f"reject-class training widens the model's last nn.Linear layer with {num_classes} outputs; "
            f"{type(module).__name__} has none"
        )
    name, old = found[-1]
    wider = nn.Linear(old.in_features, num_classes + 1, bias=old.bias is not None)
    wider.to(device=old.weight.device, dtype=old.weight.dtype)
    with torch.no_grad():
        wider.weight.zero_()
        wider.weight[:num_classes] = old.weight
        if wider.bias is not None and old.bias is not None:
            wider.bias.zero_()
            wider.bias[:num_classes] = old.bias
    parent, _, child = name.rpartition(".")
    setattr(module.get_submodule(parent) if parent else module, child, wider)
    return module


class _ClassLogits(nn.Module):
    """The K class logits of a reject-class module: what an attacker unaware of the detector attacks."""

    def __init__(self, inner: nn.Module, classes: int) -> None:
        super().__init__()
        self.inner = inner
        self.classes = classes

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.inner(x)[:, : self.classes]
        return out


def class_view(model: TorchClassifier) -> TorchClassifier:
    """A reject-class model seen as its K-class classifier (same module and weights, reject logit dropped)."""
    classes = model.num_classes - 1
    return TorchClassifier(
        _ClassLogits(model.module, classes),
        input_shape=model.input_shape,
        num_classes=classes,
        bounds=model.bounds,
        name=f"{model.name}-classes",
    )


def predict_with_reject(model: TorchClassifier, x: Tensor) -> tuple[Tensor, Tensor]:
    """The K-class label of each input (argmax over the class logits) and whether the model rejects it."""
    with torch.no_grad(), model.inference():
        logits = model.logits(x.to(model.device))
    classes = model.num_classes - 1
    return logits[:, :classes].argmax(dim=1), logits.argmax(dim=1) == classes


def rejection_rates(model: TorchClassifier, x: Tensor, y: Tensor, config: HardenConfig) -> Rejection:
    """Rejection and accuracy on clean inputs and on PGD inputs crafted against the K class logits."""
    x, y = x.to(model.device), y.to(model.device)
    x_pgd = evaluate.pgd_inputs(class_view(model), x, y, config)
    labels, rejected = predict_with_reject(model, x)
    pgd_labels, pgd_rejected = predict_with_reject(model, x_pgd)
    pgd_correct = ~pgd_rejected & (pgd_labels == y)
    return Rejection(
        n_examples=int(x.shape[0]),
        clean_rejected=_share(rejected),
        clean_accuracy=_share(~rejected & (labels == y)),
        pgd_rejected=_share(pgd_rejected),
        pgd_correct=_share(pgd_correct),
        pgd_caught=_share(pgd_rejected | pgd_correct),
    )


def _share(flags: Tensor) -> float:
    return float(flags.float().mean()) if flags.numel() else 0.0
