"""RONI on the digits demo: the sign of the impact, label flips caught, provenance, costs, and bad input refused."""

from __future__ import annotations

import logging
from dataclasses import replace

import pytest
import torch

from bastion.data import Dataset, load_demo
from bastion.defences import Roni, RoniResult
from bastion.errors import ConfigError, DataError, ModelError
from bastion.training import TorchRecipe, demo_recipe

log = logging.getLogger(__name__)


@pytest.fixture(scope="module")
def shuffled() -> Dataset:
    """The digits training split in a fixed random order: trusted, candidates and quiz are slices of it."""
    return load_demo("digits", "train").take(None, seed=0)


@pytest.fixture(scope="module")
def quiz() -> Dataset:
    test = load_demo("digits", "test")
    return replace(test, x=test.x[:200], y=test.y[:200], name="quiz")


def _slice(data: Dataset, start: int, stop: int, name: str) -> Dataset:
    return replace(data, x=data.x[start:stop], y=data.y[start:stop], name=name)


def _flip(y: torch.Tensor, idx: torch.Tensor, seed: int) -> torch.Tensor:
    """A plain random label flip: each chosen label moved to one of the 9 other classes at random."""
    flipped = y.clone()
    shift = torch.randint(1, 10, (len(idx),), generator=torch.Generator().manual_seed(seed))
    flipped[idx] = (y[idx] + shift) % 10
    return flipped


def test_rejects_candidates_that_hurt_and_accepts_those_that_help(shuffled: Dataset, quiz: Dataset) -> None:
    """Base data with almost no 9s: correct 9s help the quiz set, 9s labelled 4 hurt it (the sign of the impact)."""
    nines, others = (shuffled.y == 9).nonzero().flatten(), (shuffled.y != 9).nonzero().flatten()
    keep = torch.cat([others[:300], nines[:3]])
    trusted = replace(shuffled, x=shuffled.x[keep], y=shuffled.y[keep], name="trusted")
    helpful, harmful = nines[3:13], nines[13:23]
    labels = torch.cat([shuffled.y[helpful], torch.full((10,), 4)])
    candidates = replace(shuffled, x=shuffled.x[torch.cat([helpful, harmful])], y=labels, name="candidates")
    roni = Roni(group_size=1, calibration_size=32, calibration_fits=16)
    result = roni(demo_recipe("digits", epochs=15), trusted, quiz, candidates)

    helps, hurts = result.candidates[:10], result.candidates[10:]
    assert all(d.impact < 0 and d.decision == "accept" for d in helps), [d.reason for d in helps]
    assert all(d.impact > 0 for d in hurts), [d.reason for d in hurts]
    assert min(d.impact for d in hurts) > max(d.impact for d in helps)
    assert sum(d.decision == "reject" for d in hurts) >= 5, [d.reason for d in hurts]
    rejected = next(d for d in hurts if d.decision == "reject")
    assert rejected.reason.startswith("quiz log-loss rose by") and "> threshold" in rejected.reason
    assert "fell by" in helps[0].reason
    # Fits: the base model, one reference for single candidates, 16 calibrations, 20 candidates.
    assert result.fits == 1 + 1 + 16 + 20
    assert result.threshold is not None and result.threshold.group_size == 1 and result.threshold.samples == 16
    assert result.threshold.rule.endswith("of the impacts of 16 trusted groups of 1")


def _flipped_candidates(shuffled: Dataset) -> tuple[Dataset, set[int]]:
    candidates = _slice(shuffled, 0, 500, "candidates")
    poisoned = torch.randperm(500, generator=torch.Generator().manual_seed(1))[:50]
    return replace(candidates, y=_flip(candidates.y, poisoned, seed=2)), set(poisoned.tolist())


def test_label_flips_are_caught_far_above_chance(shuffled: Dataset, quiz: Dataset) -> None:
    """10% of 500 candidates label-flipped: precision and recall far above the 0.1 of rejecting at random."""
    candidates, poisoned = _flipped_candidates(shuffled)
    trusted = _slice(shuffled, 500, 864, "trusted")
    result = Roni()(demo_recipe("digits"), trusted, quiz, candidates)

    rejected = set(result.rejected)
    precision = len(rejected & poisoned) / max(len(rejected), 1)
    recall = len(rejected & poisoned) / len(poisoned)
    log.info(
        "RONI on 500 digits candidates, 50 flipped: precision %.2f, recall %.2f, %d fits (vs 500 one per candidate), "
        "%.1f s",
        precision,
        recall,
        result.fits,
        result.seconds,
    )
    # Measured: precision 0.91, recall 0.84, 440 fits (random rejection would give 0.1 and 0.1).
    assert precision >= 0.7 and recall >= 0.7
    assert result.fits < 500  # one fit per candidate would be 500, plus the base model and calibration
    assert {t.purpose for t in result.thresholds} == {"screen", "decide"}
    screened = [d for d in result.candidates if d.measured_with == 4]
    assert screened and all(d.decision == "accept" and "group of 4" in d.reason for d in screened)
    assert len(result.keep(candidates)) == 500 - len(rejected)


def test_one_malicious_source_is_rejected_as_a_whole(shuffled: Dataset, quiz: Dataset) -> None:
    """Six clients of 32 examples; client-0 flipped half its labels: all of its data goes, the rest stays."""
    trusted = _slice(shuffled, 0, 300, "trusted")
    candidates = _slice(shuffled, 300, 492, "candidates")
    candidates = replace(candidates, y=_flip(candidates.y, torch.arange(16), seed=3))
    sources = [f"client-{i // 32}" for i in range(192)]
    result = Roni(calibration_fits=16)(demo_recipe("digits", epochs=15), trusted, quiz, candidates, sources=sources)

    assert [s.source for s in result.sources if s.decision == "reject"] == ["client-0"], [
        s.reason for s in result.sources
    ]
    assert result.rejected == tuple(range(32))  # its 16 correct labels too: the source is judged as a whole
    assert all(s.judged_on == 32 and s.size == 32 for s in result.sources)
    assert result.candidates[0].source == "client-0" and "source 'client-0'" in result.candidates[0].reason
    # Fits: the base model, one reference for groups of 32, 16 calibrations, one per source.
    assert result.fits == 1 + 1 + 16 + 6


def test_retraining_from_scratch_counts_one_fit_per_measurement(shuffled: Dataset, quiz: Dataset) -> None:
    """``warm_start=False`` (Nelson's original) retrains on base + candidate; every retraining is one fit."""
    trusted = _slice(shuffled, 0, 40, "trusted")
    candidates = _slice(shuffled, 40, 43, "candidates")
    roni = Roni(warm_start=False, group_size=1, calibration_size=16, calibration_fits=16, metric="accuracy")
    result = roni(demo_recipe("digits", epochs=2), trusted, quiz, candidates)
    assert result.fits == 1 + 16 + 3  # no reference fit: "without" is the base model itself
    assert result.metric == "accuracy" and len(result.candidates) == 3
    assert all("quiz accuracy" in d.reason for d in result.candidates)


def test_quiz_sharing_examples_with_the_candidates_is_refused(shuffled: Dataset, quiz: Dataset) -> None:
    trusted = _slice(shuffled, 0, 200, "trusted")
    candidates = _slice(shuffled, 200, 260, "candidates")
    leaky = replace(quiz, x=torch.cat([quiz.x[:50], candidates.x[7:8]]), y=torch.cat([quiz.y[:50], candidates.y[7:8]]))
    with pytest.raises(DataError, match=r"quiz set shares 1 example\(s\) with the candidates .*quiz example 50 is"):
        Roni()(_failing_recipe(), trusted, leaky, candidates)


def test_quiz_sharing_examples_with_the_trusted_set_is_refused(shuffled: Dataset, quiz: Dataset) -> None:
    trusted = _slice(shuffled, 0, 200, "trusted")
    leaky = _slice(shuffled, 190, 230, "quiz")
    with pytest.raises(DataError, match=r"quiz set shares 10 example\(s\) with the trusted set"):
        Roni()(_failing_recipe(), trusted, leaky, _slice(shuffled, 300, 310, "candidates"))


def test_too_small_a_trusted_set_is_refused_naming_the_minimum(shuffled: Dataset, quiz: Dataset) -> None:
    with pytest.raises(DataError, match="too small to calibrate RONI: 100 examples, at least 128 needed"):
        Roni()(_failing_recipe(), _slice(shuffled, 0, 100, "t"), quiz, _slice(shuffled, 100, 110, "c"))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"metric": "f1"}, "unknown RONI metric 'f1': expected one of log-loss, accuracy"),
        ({"group_size": 0}, "expected group_size to be an integer >= 1, got 0"),
        ({"calibration_size": 8}, "expected calibration_size to be an integer >= 16, got 8"),
        ({"k": -1.0}, "expected k > 0, got -1.0"),
        ({"group_size": 40}, "expected group_size <= calibration_size // 2 = 32"),
    ],
)
def test_bad_options_are_refused(options: dict[str, object], message: str, shuffled: Dataset, quiz: Dataset) -> None:
    trusted, candidates = _slice(shuffled, 0, 200, "t"), _slice(shuffled, 200, 210, "c")
    with pytest.raises(ConfigError, match=message):
        Roni(**options)(_failing_recipe(), trusted, quiz, candidates)  # type: ignore[arg-type]


def test_a_recipe_that_raises_is_reported_as_a_model_error(shuffled: Dataset, quiz: Dataset) -> None:
    trusted, candidates = _slice(shuffled, 0, 200, "t"), _slice(shuffled, 200, 210, "c")
    with pytest.raises(ModelError, match=r"recipe broken failed on 136 examples .*RuntimeError: out of cheese"):
        Roni()(_failing_recipe(), trusted, quiz, candidates)


def test_candidate_labels_outside_the_classes_are_refused_before_measuring(shuffled: Dataset, quiz: Dataset) -> None:
    trusted = _slice(shuffled, 0, 160, "trusted")
    candidates = _slice(shuffled, 200, 210, "candidates")
    candidates = replace(candidates, y=candidates.y.clone().fill_(12))
    with pytest.raises(DataError, match="label 12 is out of range for a model with 10 classes"):
        Roni(calibration_size=16)(demo_recipe("digits", epochs=1), trusted, quiz, candidates)


def _failing_recipe() -> TorchRecipe:
    def explode() -> torch.nn.Module:
        raise RuntimeError("out of cheese")

    return TorchRecipe(factory=explode, input_shape=(1, 8, 8), num_classes=10, name="broken")


def test_result_keep_refuses_other_data(shuffled: Dataset) -> None:
    result = RoniResult("log-loss", (), (), (), 0.0, 0, 0.0)
    with pytest.raises(DataError, match="decided on 0 candidates, got 5"):
        result.keep(_slice(shuffled, 0, 5, "c"))
