"""Second versions of a PyTorch model for the disagreement oracle: what deployment does to the weights.

TensorFuzz (Odena et al. 2019) found bugs as disagreements between a model and its quantised
copy. Two copies here, each wrapped as a classifier that takes and returns float32 like the
original: :func:`half_precision` runs the whole network in float16; :func:`int8_weights` rounds
every weight tensor to 255 symmetric levels (per tensor, scale ``max|w| / 127``) and computes in
float32, the numerical effect of int8 weight quantisation without a quantised kernel library.
An ONNX export or any other file is a second version too: load it and pass it as ``reference``.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from bastion.errors import ConfigError
from bastion.models.interface import Classifier
from bastion.models.torch import TorchClassifier

__all__ = ["VARIANTS", "half_precision", "int8_weights"]


class _Half(nn.Module):
    """A float16 copy of ``inner``, fed and read in float32."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = copy.deepcopy(inner).half()

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.inner(x.half()).float()
        return out


def half_precision(model: Classifier) -> TorchClassifier:
    """A float16 copy of a PyTorch model (on a CPU, float16 kernels are slow but exact to their rounding)."""
    original = _torch_model(model, "float16")
    return _wrap(_Half(original.module).eval(), original, "float16")


def int8_weights(model: Classifier) -> TorchClassifier:
    """A copy whose floating-point weights are rounded to int8 levels, symmetric per tensor."""
    original = _torch_model(model, "int8")
    module = copy.deepcopy(original.module)
    with torch.no_grad():
        for parameter in module.parameters():
            if parameter.is_floating_point() and parameter.numel():
                scale = parameter.abs().max() / 127
                if scale > 0:
                    parameter.copy_(torch.round(parameter / scale).clamp_(-127, 127) * scale)
    return _wrap(module.eval(), original, "int8")


VARIANTS = {"float16": half_precision, "int8": int8_weights}


def _torch_model(model: Classifier, variant: str) -> TorchClassifier:
    if not isinstance(model, TorchClassifier):
        raise ConfigError(f"a {variant} copy needs a PyTorch model; this one is a {type(model).__name__}")
    return model


def _wrap(module: nn.Module, model: TorchClassifier, variant: str) -> TorchClassifier:
    return TorchClassifier(
        module,
        input_shape=model.input_shape,
        num_classes=model.num_classes,
        bounds=model.bounds,
        name=f"{model.name}-{variant}",
    )
