"""The float16 and int8 copies the disagreement oracle compares a PyTorch model with."""

from __future__ import annotations

import pytest
import torch

from bastion.data import Dataset
from bastion.errors import ConfigError
from bastion.fuzz.variants import VARIANTS, half_precision, int8_weights
from bastion.models import TorchClassifier, predict


def test_int8_weights_hold_at_most_255_levels_per_tensor_and_leave_the_original_alone(
    digits_model: TorchClassifier,
) -> None:
    before = {name: p.clone() for name, p in digits_model.module.named_parameters()}
    copy = int8_weights(digits_model)
    for name, parameter in copy.module.named_parameters():
        scale = before[name].abs().max() / 127
        levels = torch.round(parameter / scale)
        assert torch.allclose(levels * scale, parameter) and levels.abs().max() <= 127
        assert torch.unique(levels).numel() <= 255
        assert torch.equal(dict(digits_model.module.named_parameters())[name], before[name])
    assert copy.name.endswith("-int8") and copy.input_shape == digits_model.input_shape


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_copies_agree_with_the_model_on_almost_every_test_digit(
    variant: str, digits_model: TorchClassifier, digits_data: Dataset
) -> None:
    copy = VARIANTS[variant](digits_model)
    original, other = predict(digits_model, digits_data.x), predict(copy, digits_data.x)
    assert copy.logits(digits_data.x[:4]).dtype == torch.float32
    assert float((original == other).float().mean()) >= 0.97


def test_a_non_pytorch_model_is_refused() -> None:
    with pytest.raises(ConfigError, match="a float16 copy needs a PyTorch model; this one is a str"):
        half_precision("not a model")  # type: ignore[arg-type]
