"""Penultimate-layer representations of a white-box model, read with a forward pre-hook.

The representation is the *input* of one module. By default that module is the last ``nn.Linear``
in registration order (``module.named_modules()``), the output layer of the usual classifier, so
its input is the penultimate layer the poison scans of Tran et al. and Chen et al. look at.
``layer="name"`` picks another module by its name in ``named_modules()``; its input, flattened per
example, is then the representation.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from bastion.errors import ConfigError, ModelError
from bastion.models.interface import Classifier
from bastion.models.torch import TorchClassifier

__all__ = ["by_label", "representation_layer", "representations"]


def representation_layer(module: nn.Module, layer: str | None = None) -> tuple[str, nn.Module]:
    """The named module whose input is read: ``layer``, or the last ``nn.Linear``."""
    if layer is None:
        linears = [(name, m) for name, m in module.named_modules() if isinstance(m, nn.Linear)]
        if not linears:
            raise ModelError(
                "the model has no nn.Linear layer to read the penultimate representation from; "
                "name the module whose input to read with layer="
            )
        return linears[-1]
    named = dict(module.named_modules())
    if layer not in named or layer == "":
        choices = ", ".join(repr(name) for name in list(named)[1:21])
        raise ConfigError(f"the model has no layer named {layer!r}; expected one of: {choices}")
    return layer, named[layer]


def representations(
    model: Classifier, x: Tensor, *, layer: str | None = None, batch_size: int = 256
) -> tuple[Tensor, str]:
    """The input of the representation layer for every row of ``x``: float32 ``(n, d)`` on the CPU, and its name."""
    if not isinstance(model, TorchClassifier):
        raise ModelError(
            f"poison scans read a model's activations: expected a white-box TorchClassifier, got {type(model).__name__}"
        )
    if batch_size < 1:
        raise ConfigError(f"expected batch_size >= 1, got {batch_size}")
    name, target = representation_layer(model.module, layer)
    captured: list[Tensor] = []

    def keep_input(_module: nn.Module, args: tuple[Tensor, ...]) -> None:
        captured.append(args[0].detach().flatten(1).float().cpu())

    handle = target.register_forward_pre_hook(keep_input)
    try:
        with torch.no_grad(), model.inference():
            for batch in torch.split(x, batch_size):
                model.logits(batch.to(model.device, model.dtype))
    finally:
        handle.remove()
    reps = torch.cat(captured) if captured else torch.empty(0, 0)
    if reps.shape[0] != x.shape[0]:
        raise ModelError(
            f"layer {name!r} saw {reps.shape[0]} rows for {x.shape[0]} inputs (is it called more than once "
            "per forward pass, or not at all?); name another layer with layer="
        )
    return reps, name


def by_label(y: Tensor) -> list[tuple[int, Tensor]]:
    """``(label, indices)`` for every label present in ``y``, in increasing label order."""
    labels = y.detach().cpu()
    return [(int(label), (labels == label).nonzero().flatten()) for label in torch.unique(labels)]
