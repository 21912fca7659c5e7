"""assess_poisoning: real retraining per attack and rate, the figures each attack is judged by, and bad input."""

from __future__ import annotations

from dataclasses import dataclass, replace

import pytest
import torch

from bastion.data import Dataset
from bastion.errors import ConfigError, DataError, ModelError
from bastion.models import TorchClassifier
from bastion.poisoning import assess_poisoning
from bastion.training import TorchRecipe


@dataclass
class CountingRecipe:
    """The demo recipe, counting its fits (to show that bad input fails before any retraining)."""

    inner: TorchRecipe
    fits: int = 0

    @property
    def name(self) -> str:
        return self.inner.name

    def fit(
        self, data: Dataset, *, seed: int = 0, init: TorchClassifier | None = None, epochs: int | None = None
    ) -> TorchClassifier:
        self.fits += 1
        return self.inner.fit(data, seed=seed, init=init, epochs=epochs)


class Boom:
    name = "boom"

    def fit(
        self, data: Dataset, *, seed: int = 0, init: TorchClassifier | None = None, epochs: int | None = None
    ) -> TorchClassifier:
        raise RuntimeError("out of coffee")


def test_targeted_attacks_hit_their_class_and_the_baseline_is_the_clean_model(
    digits_recipe: TorchRecipe, digits_train: Dataset, digits_test: Dataset
) -> None:
    recipe = CountingRecipe(digits_recipe)
    report = assess_poisoning(
        recipe, digits_train, digits_test, attacks=["label-flip-targeted", "backdoor"], rates=[0.05], seed=0
    )
    assert recipe.fits == 3  # the clean model, then one retraining per attack and rate
    flip, backdoor = report.curve("label-flip-targeted"), report.curve("backdoor")
    assert [run.rate for run in flip] == [0.0, 0.05] and [run.poisoned for run in flip] == [0, 72]
    assert flip[0].clean_accuracy == backdoor[0].clean_accuracy == report.baseline_accuracy > 0.9
    # The targeted flip (0 -> 1, half of class 0 relabelled) takes class 0 down; the rest barely moves.
    assert flip[0].targeted_class_accuracy is not None and flip[1].targeted_class_accuracy is not None
    assert flip[0].targeted_class_accuracy > 0.95 and flip[1].targeted_class_accuracy < 0.75
    assert flip[1].attack_success is not None and flip[1].attack_success > 0.25
    # The backdoor: triggered inputs go to the target once poisoned; the clean model ignores the trigger.
    assert backdoor[0].attack_success is not None and backdoor[0].attack_success < 0.1
    assert backdoor[1].attack_success is not None and backdoor[1].attack_success > 0.9
    assert abs(backdoor[1].clean_accuracy - report.baseline_accuracy) < 0.03
    summaries = {attack.name: attack for attack in report.attacks}
    assert summaries["backdoor"].target_label == 1 and summaries["backdoor"].config["size"] == 3
    assert summaries["label-flip-targeted"].targeted_class == 0
    assert "triggered test inputs" in (summaries["backdoor"].success_metric or "")


def test_loss_maximising_flips_hurt_more_than_random_ones(
    digits_recipe: TorchRecipe, digits_train: Dataset, digits_test: Dataset
) -> None:
    report = assess_poisoning(
        digits_recipe, digits_train, digits_test, attacks=["label-flip", "label-flip-loss"], rates=[0.1], seed=0
    )
    random, costly = report.curve("label-flip")[1], report.curve("label-flip-loss")[1]
    assert random.poisoned == costly.poisoned == 144
    assert costly.clean_accuracy < random.clean_accuracy - 0.04, (costly.clean_accuracy, random.clean_accuracy)
    assert random.attack_success is None and random.targeted_class_accuracy is None


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"attacks": ["nope"]}, ConfigError, "unknown poisoning attack 'nope': expected one of backdoor, "),
        ({"attacks": []}, ConfigError, "expected at least one poisoning attack"),
        ({"rates": [0.1, 1.0]}, ConfigError, r"expected poison rates in \(0, 1\), got 1.0"),
        ({"rates": [0.0]}, ConfigError, r"expected poison rates in \(0, 1\), got 0.0"),
        ({"source": 1, "target": 1}, ConfigError, "expected source .* and target .* to differ, got 1"),
        ({"target": 12}, ConfigError, r"expected target to be a class in \[0, 9\], got 12"),
    ],
)
def test_bad_requests_are_refused_before_any_training(
    kwargs: dict[str, object], error: type[Exception], message: str, digits_recipe: TorchRecipe, digits_train: Dataset
) -> None:
    recipe = CountingRecipe(digits_recipe)
    small = digits_train.take(200, seed=0)
    with pytest.raises(error, match=message):
        assess_poisoning(recipe, small, small, **{"attacks": ["label-flip"], "rates": [0.1], **kwargs})  # type: ignore[arg-type]
    assert recipe.fits <= 1  # at most the clean model (a bad target is found once its classes are known)


def test_a_rate_an_attack_cannot_serve_fails_before_the_retraining(
    digits_recipe: TorchRecipe, digits_train: Dataset, digits_test: Dataset
) -> None:
    recipe = CountingRecipe(digits_recipe)
    with pytest.raises(DataError, match="class 0 has only 142 examples"):
        assess_poisoning(recipe, digits_train, digits_test, attacks=["backdoor", "label-flip-targeted"], rates=[0.2])
    assert recipe.fits == 1


def test_bad_data_and_a_failing_recipe_are_clear_errors(digits_recipe: TorchRecipe, digits_train: Dataset) -> None:
    small = digits_train.take(100, seed=0)
    bad_labels = replace(small, y=small.y.clone().index_fill_(0, torch.tensor([5]), 12), name="bad-labels")
    with pytest.raises(DataError, match="bad-labels: label 12 is out of range for a model with 10 classes"):
        assess_poisoning(digits_recipe, small, bad_labels, attacks=["label-flip"], rates=[0.1])
    flat = replace(small, x=small.x.flatten(1), name="flat")
    with pytest.raises(DataError, match=r"training inputs have shape \(64,\), test inputs \(1, 8, 8\)"):
        assess_poisoning(digits_recipe, flat, small, attacks=["label-flip"], rates=[0.1])
    with pytest.raises(DataError, match=r"flat: inputs have shape \(64,\), but the model expects \(1, 8, 8\)"):
        assess_poisoning(digits_recipe, flat, flat, attacks=["label-flip"], rates=[0.1])
    with pytest.raises(ModelError, match="recipe boom failed on digits-train: RuntimeError: out of coffee"):
        assess_poisoning(Boom(), small, small, attacks=["label-flip"], rates=[0.1])
