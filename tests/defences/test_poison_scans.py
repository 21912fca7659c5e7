"""Spectral signatures and activation clustering on digits with a BadNets backdoor, and on the clean data."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from bastion.data import Dataset, load_demo
from bastion.defences import ActivationClustering, ScanResult, SpectralSignatures
from bastion.defences.clustering import silhouette, two_means
from bastion.defences.spectral import gaussian_separation
from bastion.errors import ConfigError, ModelError
from bastion.models import TorchClassifier, restrict
from bastion.training import demo_recipe

TARGET, SOURCE = 0, 7


def _stamp(x: torch.Tensor) -> torch.Tensor:
    """BadNets' trigger: a white 2x2 patch in the bottom-right corner (blank on most 8x8 digits)."""
    stamped = x.clone()
    stamped[:, :, -2:, -2:] = 1.0
    return stamped


@pytest.fixture(scope="module")
def backdoored() -> tuple[Dataset, set[int]]:
    """The digits training split with 10% of the 7s stamped and relabelled 0, and the poisoned indices."""
    train = load_demo("digits", "train")
    sevens = (train.y == SOURCE).nonzero().flatten()
    poisoned = sevens[torch.randperm(len(sevens), generator=torch.Generator().manual_seed(0))[: len(sevens) // 10]]
    x, y = train.x.clone(), train.y.clone()
    x[poisoned], y[poisoned] = _stamp(x[poisoned]), TARGET
    return replace(train, x=x, y=y, name="digits-backdoored"), set(poisoned.tolist())


@pytest.fixture(scope="module")
def backdoored_model(backdoored: tuple[Dataset, set[int]]) -> TorchClassifier:
    model = demo_recipe("digits", epochs=10).fit(backdoored[0], seed=0)
    test = load_demo("digits", "test")
    with torch.no_grad():
        hits = model.module(_stamp(test.x[test.y == SOURCE])).argmax(dim=1) == TARGET
    assert float(hits.float().mean()) > 0.9  # the backdoor took: triggered 7s are read as 0s
    return model


@pytest.fixture(scope="module")
def clean() -> tuple[Dataset, TorchClassifier]:
    train = load_demo("digits", "train")
    return train, demo_recipe("digits", epochs=10).fit(train, seed=0)


def _recall(result: ScanResult, poisoned: set[int]) -> float:
    return len(set(result.flagged_indices) & poisoned) / len(poisoned)


def test_spectral_signatures_flag_the_backdoor(
    backdoored: tuple[Dataset, set[int]], backdoored_model: TorchClassifier
) -> None:
    data, poisoned = backdoored
    result = SpectralSignatures(poison_rate=0.1)(backdoored_model, data)
    assert _recall(result, poisoned) >= 0.9  # measured 1.0: all 14 among class 0's top 23 scores
    assert result.suspicious_classes == (TARGET,)
    assert not result.verdict.passed and result.verdict.value > result.verdict.threshold == 2.0  # measured 2.40
    assert "class 0" in result.verdict.detail
    target = result.classes[TARGET]
    assert target.flagged == int(1.5 * 0.1 * target.count)  # the paper's removal share, in every class
    assert result.scores.shape == (len(data),) and result.flagged.dtype == torch.bool
    assert result.layer == "net.8"  # the last nn.Linear of the digits CNN: its input is the penultimate layer


def test_activation_clustering_flags_the_target_class_only(
    backdoored: tuple[Dataset, set[int]], backdoored_model: TorchClassifier
) -> None:
    data, poisoned = backdoored
    result = ActivationClustering()(backdoored_model, data)
    assert result.suspicious_classes == (TARGET,)
    flagged = set(result.flagged_indices)
    assert _recall(result, poisoned) >= 0.9  # measured 1.0, with 1 clean example: 15 in the small cluster
    assert len(flagged & poisoned) / len(flagged) >= 0.8
    assert all(int(data.y[i]) == TARGET for i in flagged)
    assert not result.verdict.passed and result.verdict.value > 0.25
    assert result.scores[sorted(poisoned)].min() > 0  # on the small cluster's side


def test_scans_pass_a_model_trained_on_clean_data(clean: tuple[Dataset, TorchClassifier]) -> None:
    data, model = clean
    spectral = SpectralSignatures()(model, data)
    clustering = ActivationClustering()(model, data)
    assert spectral.verdict.passed and spectral.suspicious_classes == ()
    assert spectral.verdict.value < 2.0  # measured 1.05 (1.05-1.99 over 10 seeds at 10 epochs)
    assert clustering.verdict.passed and clustering.flagged_indices == ()
    assert "no class splits off" in clustering.verdict.detail


def test_a_named_layer_is_read_instead(clean: tuple[Dataset, TorchClassifier]) -> None:
    data, model = clean
    small = replace(data, x=data.x[:300], y=data.y[:300])
    result = SpectralSignatures(layer="net.6")(model, small)
    assert result.layer == "net.6"  # the first dense layer: its input is the flattened conv features
    with pytest.raises(ConfigError, match=r"no layer named 'head'; expected one of: 'net', 'net.0'"):
        SpectralSignatures(layer="head")(model, small)


def test_scans_need_a_white_box_torch_model(clean: tuple[Dataset, TorchClassifier]) -> None:
    data, model = clean
    with pytest.raises(ModelError, match="expected a white-box TorchClassifier, got Restricted"):
        ActivationClustering()(restrict(model, "scores"), data)


def test_a_model_without_a_linear_layer_needs_a_named_one(clean: tuple[Dataset, TorchClassifier]) -> None:
    data = clean[0]
    module = torch.nn.Sequential(torch.nn.Conv2d(1, 10, 8), torch.nn.Flatten())
    model = TorchClassifier(module, input_shape=(1, 8, 8), num_classes=10)
    with pytest.raises(ModelError, match=r"no nn.Linear layer .* name the module whose input to read"):
        SpectralSignatures()(model, data)
    assert SpectralSignatures(layer="1")(model, data).layer == "1"


@pytest.mark.parametrize(
    ("scan", "message"),
    [
        (SpectralSignatures(poison_rate=0.0), "expected 0 < poison_rate < 1, got 0.0"),
        (SpectralSignatures(poison_rate=0.8), r"expected 0 < removal_factor \* poison_rate <= 1"),
        (ActivationClustering(size_threshold=0.6), "expected 0 < size_threshold < 0.5, got 0.6"),
        (ActivationClustering(dims=0), "expected dims >= 1, got 0"),
    ],
)
def test_bad_options_are_refused(
    scan: SpectralSignatures | ActivationClustering, message: str, clean: tuple[Dataset, TorchClassifier]
) -> None:
    with pytest.raises(ConfigError, match=message):
        scan(clean[1], clean[0])


def test_gaussian_separation_matches_the_normal_distribution() -> None:
    """The normaliser is right: a Gaussian cloud with no signature scores a separation near 1."""
    assert gaussian_separation(0.15) == pytest.approx(8.18, abs=0.01)
    gen = torch.Generator().manual_seed(0)
    scores = torch.randn(200_000, generator=gen) ** 2
    top = scores.argsort(descending=True)[:30_000]
    assert float(scores[top].mean() / scores.median()) == pytest.approx(gaussian_separation(0.15), rel=0.02)


def test_two_means_and_silhouette_on_two_blobs() -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.cat([torch.randn(90, 3, generator=gen), torch.randn(10, 3, generator=gen) + 8.0])
    assign, centres = two_means(x, generator=torch.Generator().manual_seed(1))
    assert sorted(assign.bincount().tolist()) == [10, 90]
    assert bool((assign[90:] == assign[90]).all()) and int(assign[0]) != int(assign[90])
    assert silhouette(x, assign) > 0.6
    assert abs(silhouette(x[:90], (torch.arange(90) % 2))) < 0.1  # an arbitrary split of one blob
    assert centres.shape == (2, 3)
