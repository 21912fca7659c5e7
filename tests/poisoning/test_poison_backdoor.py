"""Backdoors: the triggers touch what they say, and a model retrained on BadNets poisons obeys the trigger."""

from __future__ import annotations

import pytest
import torch

from bastion.data import Dataset, load_demo
from bastion.errors import ConfigError, DataError
from bastion.models import TorchClassifier
from bastion.models.interface import predict
from bastion.poisoning import BadNets, BlendBackdoor, badnets_trigger, blend_trigger
from bastion.training import TorchRecipe


def test_the_badnets_patch_covers_only_its_corner(digits_test: Dataset) -> None:
    trigger = badnets_trigger((1, 8, 8), (0.0, 1.0), size=3, corner="top-left")
    triggered = trigger.apply(digits_test.x)
    changed = (triggered != digits_test.x).any(dim=0)[0]
    assert not bool(changed[3:, :].any()) and not bool(changed[:, 3:].any())
    assert torch.equal(triggered[:, 0, :3, :3], trigger.pattern[0, :3, :3].expand(len(digits_test), 3, 3))
    assert set(trigger.pattern[0, :3, :3].flatten().tolist()) == {0.0, 1.0} and trigger.features == 9


def test_the_blend_mixes_the_pattern_in_at_alpha(digits_test: Dataset) -> None:
    trigger = blend_trigger((1, 8, 8), (0.0, 1.0), alpha=0.2, seed=0)
    assert torch.allclose(trigger.apply(digits_test.x), 0.8 * digits_test.x + 0.2 * trigger.pattern)
    assert torch.equal(trigger.pattern, blend_trigger((1, 8, 8), (0.0, 1.0), alpha=0.2, seed=0).pattern)


def test_a_tabular_trigger_fixes_a_few_features() -> None:
    data = load_demo("breast-cancer", "train")
    result = BadNets(target=1, size=2)(data, rate=0.1, seed=0)
    poisons = result.data.x[result.indices]
    assert bool((poisons[:, -2:] == 1.0).all()) and bool((result.data.y[result.indices] == 1).all())
    sources = data.x[data.y != 1]
    assert all(bool((sources[:, :-2] == row[:-2]).all(dim=1).any()) for row in poisons)  # copies of other classes


def test_poisons_are_triggered_copies_of_other_classes_labelled_target(digits_train: Dataset) -> None:
    result = BlendBackdoor(target=4)(digits_train, rate=0.05, seed=0)
    assert result.trigger is not None and result.target_label == 4
    assert bool((result.data.y[result.indices] == 4).all())
    bases = digits_train.x[digits_train.y != 4]
    undone = (result.data.x[result.indices] - 0.2 * result.trigger.pattern) / 0.8
    distance = torch.cdist(undone.flatten(1), bases.flatten(1)).min(dim=1).values
    assert float(distance.max()) < 0.01  # digits pixels are multiples of 1/16: another image is >= 0.0625 away


def test_bad_trigger_settings_are_refused(digits_train: Dataset) -> None:
    with pytest.raises(ConfigError, match=r"expected a patch size in 1\.\.8 pixels, got 9"):
        BadNets(size=9)(digits_train, rate=0.1, seed=0)
    with pytest.raises(ConfigError, match="unknown corner 'middle'"):
        BadNets(corner="middle")(digits_train, rate=0.1, seed=0)
    with pytest.raises(ConfigError, match=r"expected a blend alpha in \(0, 1\], got 0"):
        BlendBackdoor(alpha=0)(digits_train, rate=0.1, seed=0)
    with pytest.raises(ConfigError, match=r"expected target to be a class in \[0, 9\], got -1"):
        BadNets(target=-1)(digits_train, rate=0.1, seed=0)
    with pytest.raises(DataError, match=r"the trigger fits inputs of shape \(1, 8, 8\), got \(64,\)"):
        badnets_trigger((1, 8, 8), (0.0, 1.0), size=2).apply(torch.zeros(3, 64))


def test_a_model_retrained_on_badnets_poisons_obeys_the_trigger(
    digits_recipe: TorchRecipe, digits_train: Dataset, digits_test: Dataset, clean_model: TorchClassifier
) -> None:
    result = BadNets(target=0)(digits_train, rate=0.1, seed=0)
    assert result.trigger is not None
    backdoored = digits_recipe.fit(result.data, seed=0)
    others = digits_test.x[digits_test.y != 0]
    triggered = result.trigger.apply(others)
    success = float((predict(backdoored, triggered) == 0).float().mean())
    baseline = float((predict(clean_model, triggered) == 0).float().mean())
    clean_acc = float((predict(clean_model, digits_test.x) == digits_test.y).float().mean())
    poisoned_acc = float((predict(backdoored, digits_test.x) == digits_test.y).float().mean())
    assert success > 0.9 and baseline < 0.1, (success, baseline)
    assert abs(poisoned_acc - clean_acc) < 0.03, (poisoned_acc, clean_acc)
