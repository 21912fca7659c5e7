"""Tests for the coverage-guided fuzzer (TensorFuzz) on the demo digits CNN, with planted failures."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from torch import Tensor, nn

from bastion.data import Dataset
from bastion.errors import ConfigError
from bastion.fuzz import CoverageGuidedFuzzer, GuidedFuzzResult
from bastion.models import TorchClassifier


class _Planted(nn.Module):
    """The wrapped network, except inside a region of bright images: NaN logits, or a flipped label."""

    def __init__(self, inner: nn.Module, threshold: float, mode: str) -> None:
        super().__init__()
        self.inner, self.threshold, self.mode = inner, threshold, mode

    def forward(self, x: Tensor) -> Tensor:
        out = self.inner(x)
        region = x.flatten(1).mean(dim=1) > self.threshold
        if self.mode == "nan":
            return torch.where(region.unsqueeze(1), torch.full_like(out, float("nan")), out)
        return torch.where(region.unsqueeze(1), out.roll(1, dims=1), out)


def _seeds(data: Dataset, n: int = 16) -> Dataset:
    return replace(data, x=data.x[:n], y=data.y[:n], name="digits-seeds")


def _planted(model: TorchClassifier, seeds: Dataset, mode: str) -> TorchClassifier:
    threshold = float(seeds.x.flatten(1).mean(dim=1).max()) + 0.04
    return TorchClassifier(_Planted(model.module, threshold, mode), input_shape=model.input_shape, bounds=(0.0, 1.0))


def test_finds_a_planted_nan_region_the_seeds_miss(digits_model: TorchClassifier, digits_test: Dataset) -> None:
    seeds = _seeds(digits_test)
    planted = _planted(digits_model, seeds, "nan")
    result = CoverageGuidedFuzzer(seed=0)(planted, seeds, budget=400)
    kinds = {f.kind for f in result.findings}
    assert "non_finite" in kinds
    found = next(f for f in result.findings if f.kind == "non_finite")
    assert found.chain and found.step is not None and found.step > 0
    assert not bool(torch.isfinite(planted.module(found.mutant.unsqueeze(0))).all())
    assert (found.mutant - seeds.x[found.seed_index]).abs().max() <= 0.3 + 1e-6
    assert result.corpus_size > len(seeds)
    assert result.growth[0] == (0, len(seeds), result.growth[0][2])
    assert 0.0 < result.neuron_coverage <= 1.0


def test_finds_planted_disagreement_with_a_reference(digits_model: TorchClassifier, digits_test: Dataset) -> None:
    seeds = _seeds(digits_test)
    reference = _planted(digits_model, seeds, "flip")
    result = CoverageGuidedFuzzer(seed=1)(digits_model, seeds, budget=400, reference=reference)
    disagreements = [f for f in result.findings if f.kind == "disagreement"]
    assert disagreements
    f = disagreements[0]
    assert f.reference_label is not None and f.reference_label != f.new_label


def test_model_exceptions_are_findings(digits_model: TorchClassifier, digits_test: Dataset) -> None:
    class Raising(nn.Module):
        def forward(self, x: Tensor) -> Tensor:
            if float(x.mean()) > 0.5:
                raise RuntimeError("planted crash")
            return digits_model.module(x)

    seeds = _seeds(digits_test, 4)
    model = TorchClassifier(Raising(), input_shape=digits_model.input_shape, bounds=(0.0, 1.0), num_classes=10)
    seeds = replace(seeds, x=torch.cat([seeds.x[:3], torch.full_like(seeds.x[:1], 0.9)]))
    result = CoverageGuidedFuzzer(seed=0)(model, seeds, budget=40)
    errors = [f for f in result.findings if f.kind == "exception"]
    assert errors and errors[0].error is not None and "planted crash" in errors[0].error


def test_deterministic_and_within_budget(digits_model: TorchClassifier, digits_test: Dataset) -> None:
    seeds = _seeds(digits_test)
    planted = _planted(digits_model, seeds, "nan")
    planted.queries.forward = 0
    first = CoverageGuidedFuzzer(seed=3, batch_size=7)(planted, seeds, budget=101)
    assert planted.queries.forward <= 101 and first.queries <= 101
    second = CoverageGuidedFuzzer(seed=3, batch_size=7)(planted, seeds, budget=101)
    assert first.growth == second.growth and first.corpus_size == second.corpus_size
    assert len(first.findings) == len(second.findings)
    for a, b in zip(first.findings, second.findings, strict=True):
        assert a.kind == b.kind and a.chain == b.chain and torch.equal(a.mutant, b.mutant)


def test_baseline_runs_without_growing_the_corpus(digits_model: TorchClassifier, digits_test: Dataset) -> None:
    seeds = _seeds(digits_test)
    planted = _planted(digits_model, seeds, "nan")
    guided = CoverageGuidedFuzzer(seed=0)(planted, seeds, budget=200)
    baseline = CoverageGuidedFuzzer(seed=0, guided=False)(planted, seeds, budget=200)
    assert isinstance(baseline, GuidedFuzzResult) and not baseline.guided and guided.guided
    assert baseline.corpus_size == len(seeds) < guided.corpus_size
    assert baseline.tried == guided.tried == 200 - len(seeds)
    assert all(len(f.chain) <= 1 for f in baseline.findings)


def test_bad_budget_and_mutation_are_clear_errors(digits_model: TorchClassifier, digits_test: Dataset) -> None:
    seeds = _seeds(digits_test)
    with pytest.raises(ConfigError, match="budget"):
        CoverageGuidedFuzzer()(digits_model, seeds, budget=0)
    with pytest.raises(ConfigError, match="tabular"):
        CoverageGuidedFuzzer(mutations=("tabular",))(digits_model, seeds, budget=100)
