"""Label flipping: random, targeted and loss-maximising flips change the labels they say, as they say."""

from __future__ import annotations

import pytest
import torch

from bastion.data import Dataset
from bastion.errors import ConfigError, DataError
from bastion.models import TorchClassifier
from bastion.models.restricted import restrict
from bastion.poisoning import LossLabelFlip, RandomLabelFlip, TargetedLabelFlip


def test_random_flips_go_to_every_other_class_uniformly(digits_train: Dataset) -> None:
    result = RandomLabelFlip()(digits_train, rate=0.4, seed=0)
    old, new = digits_train.y[result.indices], result.data.y[result.indices]
    assert bool((old != new).all())
    shifts = torch.bincount((new - old) % 10, minlength=10)
    assert shifts[0] == 0 and bool((shifts[1:] > 0.6 * len(old) / 9).all())  # each other class, roughly evenly
    assert result.target_label is None and result.source_label is None


def test_targeted_flips_relabel_only_source_examples_as_the_target(digits_train: Dataset) -> None:
    result = TargetedLabelFlip(source=3, target=8)(digits_train, rate=0.05, seed=0)
    assert bool((digits_train.y[result.indices] == 3).all()) and bool((result.data.y[result.indices] == 8).all())
    assert (result.source_label, result.target_label) == (3, 8)


def test_targeted_flips_refuse_a_rate_the_source_class_cannot_serve(digits_train: Dataset) -> None:
    message = r"flips 287 labels, but class 0 has only 142 examples; expected a rate <= 0\.0988"
    with pytest.raises(DataError, match=message):
        TargetedLabelFlip()(digits_train, rate=0.2, seed=0)
    with pytest.raises(ConfigError, match="expected target != source, got both 2"):
        TargetedLabelFlip(source=2, target=2)(digits_train, rate=0.05, seed=0)
    with pytest.raises(ConfigError, match=r"expected target to be a class in \[0, 9\], got 10"):
        TargetedLabelFlip(target=10)(digits_train, rate=0.05, seed=0)


def test_loss_flips_pick_the_costliest_labels_under_the_reference_model(
    digits_train: Dataset, clean_model: TorchClassifier
) -> None:
    result = LossLabelFlip()(digits_train, rate=0.1, seed=0, model=clean_model)
    with torch.no_grad():
        nll = -torch.log_softmax(clean_model.logits(digits_train.x), dim=1)
    flipped = nll[result.indices, result.data.y[result.indices]]  # the reference model's loss on the new labels
    chosen = torch.zeros(len(digits_train), dtype=torch.bool)
    chosen[result.indices] = True
    wrong = nll.clone()
    wrong[torch.arange(len(digits_train)), digits_train.y] = float("-inf")
    best_elsewhere = wrong[~chosen].max(dim=1).values
    # Each flip is its example's least plausible label, and no unflipped example offered a costlier flip.
    assert torch.allclose(flipped, wrong[result.indices].max(dim=1).values)
    assert float(flipped.min()) >= float(best_elsewhere.max())
    random = RandomLabelFlip()(digits_train, rate=0.1, seed=0)
    assert float(flipped.mean()) > 2 * float(nll[random.indices, random.data.y[random.indices]].mean())


def test_loss_flips_need_a_reference_model_with_scores(digits_train: Dataset, clean_model: TorchClassifier) -> None:
    with pytest.raises(ConfigError, match="needs a reference model trained on the clean data"):
        LossLabelFlip()(digits_train, rate=0.1, seed=0)
    with pytest.raises(ConfigError, match="exposes only labels"):
        LossLabelFlip()(digits_train, rate=0.1, seed=0, model=restrict(clean_model, "labels"))
