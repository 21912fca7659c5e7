"""Tests for the metamorphic fuzzer and its label-preserving transformations, on the demo digits CNN."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from torch import Tensor, nn

from bastion.data import Dataset, load_demo
from bastion.errors import ConfigError, DataError
from bastion.fuzz import TRANSFORMS, MetamorphicFuzzer, MutationLimits, apply_chain, within_limits
from bastion.fuzz.transforms import IMAGE_TRANSFORMS
from bastion.models import TorchClassifier
from bastion.models.interface import predict


@pytest.mark.parametrize("name", sorted(IMAGE_TRANSFORMS))
def test_image_transforms_stay_in_bounds_and_are_identity_at_zero(name: str, digits_data: Dataset) -> None:
    x = digits_data.x[:16]
    transform = TRANSFORMS[name]
    out = transform(x, 1.0, generator=torch.Generator().manual_seed(0), bounds=digits_data.bounds)
    assert out.shape == x.shape
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    assert not torch.equal(out, x)
    same = transform(x, 0.0, generator=torch.Generator().manual_seed(0), bounds=digits_data.bounds)
    assert torch.allclose(same, x, atol=1e-5)
    exact, _ = apply_chain(x, [(name, 0.0)], generator=torch.Generator(), bounds=digits_data.bounds)
    assert torch.equal(exact, x)
    again = transform(x, 1.0, generator=torch.Generator().manual_seed(0), bounds=digits_data.bounds)
    assert torch.equal(again, out)


def test_tabular_transform_honours_constraints() -> None:
    data = load_demo("breast-cancer", "test")
    assert data.constraints is not None
    out, _ = apply_chain(
        data.x,
        [("tabular", 1.0)],
        generator=torch.Generator().manual_seed(0),
        bounds=data.bounds,
        constraints=data.constraints,
    )
    assert not bool(data.constraints.violations(out, data.x).any())
    immutable = list(data.constraints.immutable)
    assert torch.equal(out[:, immutable], data.x[:, immutable])
    assert (out - data.x).abs().max() > 0
    valid = within_limits(
        out, data.x, limits=MutationLimits(), bounds=data.bounds, constraints=data.constraints, original=data.x
    )
    assert bool(valid.all())


def test_limits_reject_a_mutant_that_changes_too_much(digits_data: Dataset) -> None:
    x = digits_data.x[:2]
    inverted = 1.0 - x
    valid = within_limits(inverted, x, limits=MutationLimits(), bounds=digits_data.bounds)
    assert not bool(valid.any())
    assert bool(within_limits(x.clone(), x, limits=MutationLimits(), bounds=digits_data.bounds).all())


def test_fuzzer_is_deterministic_and_keeps_the_budget(digits_model: TorchClassifier, digits_data: Dataset) -> None:
    fuzzer = MetamorphicFuzzer(strength=1.0, seed=3)
    first = fuzzer(digits_model, digits_data, budget=203)
    second = fuzzer(digits_model, digits_data, budget=203)
    assert first.tried == 203 and first.budget == 203
    assert 0 < first.valid <= first.tried
    assert 0.0 < first.validity_rate <= 1.0
    assert first.queries == len(digits_data) + first.valid
    assert [(f.seed_index, f.chain, f.new_label) for f in first.findings] == [
        (f.seed_index, f.chain, f.new_label) for f in second.findings
    ]
    for a, b in zip(first.findings, second.findings, strict=True):
        assert torch.equal(a.mutant, b.mutant)
    other = MetamorphicFuzzer(strength=1.0, seed=4)(digits_model, digits_data, budget=203)
    assert [f.chain for f in other.findings] != [f.chain for f in first.findings]


def test_findings_really_change_the_prediction(digits_model: TorchClassifier, digits_data: Dataset) -> None:
    result = MetamorphicFuzzer(strength=1.0, seed=0)(digits_model, digits_data, budget=300)
    assert result.n_findings > 0
    mutants = torch.stack([f.mutant for f in result.findings])
    seeds = digits_data.x[[f.seed_index for f in result.findings]]
    with digits_model.inference():
        assert predict(digits_model, mutants).tolist() == [f.new_label for f in result.findings]
        assert predict(digits_model, seeds).tolist() == [f.original_label for f in result.findings]
    assert [f.original_label for f in result.findings] == digits_data.y[
        [f.seed_index for f in result.findings]
    ].tolist()
    for finding in result.findings:
        assert finding.kind == "misprediction"
        assert sum(s for _, s in finding.chain) <= 1.0 + 1e-6
        assert float(finding.mutant.min()) >= 0.0 and float(finding.mutant.max()) <= 1.0


class _RaisesWhenBright(nn.Module):
    """The digits CNN, planted to raise when no pixel is dark (a brightened image)."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: Tensor) -> Tensor:
        if bool((x.flatten(1).amin(dim=1) > 0.01).any()):
            raise ValueError("planted failure on a bright input")
        out: Tensor = self.inner(x)
        return out


def test_a_model_that_raises_yields_exception_findings(digits_model: TorchClassifier, digits_data: Dataset) -> None:
    planted = TorchClassifier(
        _RaisesWhenBright(digits_model.module), input_shape=(1, 8, 8), bounds=(0.0, 1.0), num_classes=10
    )
    result = MetamorphicFuzzer(transforms=("brightness",), strength=1.0, seed=0)(planted, digits_data, budget=64)
    exceptions = [f for f in result.findings if f.kind == "exception"]
    assert exceptions
    for finding in exceptions:
        assert finding.new_label is None
        assert finding.error is not None and "planted failure" in finding.error
        assert float(finding.mutant.min()) > 0.01
    assert result.tried == 64


def test_tabular_fuzzing_keeps_the_constraints() -> None:
    data = load_demo("breast-cancer", "test")
    gen = torch.Generator().manual_seed(0)
    module = nn.Sequential(nn.Linear(30, 2)).eval()
    with torch.no_grad():
        module[0].weight.copy_(torch.randn(2, 30, generator=gen))
    model = TorchClassifier(module, input_shape=(30,), bounds=(0.0, 1.0), num_classes=2)
    labels = predict(model, data.x)
    seeds = replace(data, y=labels)  # every seed correct, so every seed is fuzzed
    result = MetamorphicFuzzer(strength=1.0, seed=0)(model, seeds, budget=100)
    assert result.tried == 100 and result.valid == 100
    assert data.constraints is not None
    for finding in result.findings:
        original = data.x[finding.seed_index : finding.seed_index + 1]
        assert not bool(data.constraints.violations(finding.mutant.unsqueeze(0), original).any())


def test_bad_inputs_raise(digits_model: TorchClassifier, digits_data: Dataset) -> None:
    with pytest.raises(ConfigError, match="budget of at least one mutant, got 0"):
        MetamorphicFuzzer()(digits_model, digits_data, budget=0)
    tabular = load_demo("breast-cancer", "test")
    with pytest.raises(DataError, match=r"seeds have shape \(30,\), but the model expects \(1, 8, 8\)"):
        MetamorphicFuzzer()(digits_model, tabular, budget=10)
    with pytest.raises(ConfigError, match=r"strength in \[0, 1\], got 1.5"):
        MetamorphicFuzzer(strength=1.5)(digits_model, digits_data, budget=10)
    with pytest.raises(ConfigError, match="unknown transformation 'warp'"):
        MetamorphicFuzzer(transforms=("warp",))(digits_model, digits_data, budget=10)
    with pytest.raises(ConfigError, match="'tabular' does not apply to images"):
        MetamorphicFuzzer(transforms=("tabular",))(digits_model, digits_data, budget=10)
    with pytest.raises(ConfigError, match="mutants_per_seed >= 1, got 0"):
        MetamorphicFuzzer(mutants_per_seed=0)(digits_model, digits_data, budget=10)
    with pytest.raises(ConfigError, match=r"linf in \(0, 1\], got 0"):
        MutationLimits(linf=0)
