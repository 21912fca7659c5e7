"""Every registered poisoning attack: exactly round(rate * n) examples, deterministic, input untouched, labels valid."""

from __future__ import annotations

import pytest
import torch

from bastion.data import Dataset
from bastion.errors import ConfigError
from bastion.models import TorchClassifier
from bastion.poisoning import POISONS, PoisonAttack, PoisonResult, make_poison

RATE = 0.03


def build(name: str, test: Dataset) -> PoisonAttack:
    """The attack, aimed where it needs an aim (feature collision: a test input of class 0, base class 1)."""
    if name == "feature-collision":
        return make_poison(name, target=test.x[0], base_label=1, steps=30)
    return make_poison(name)


def run(name: str, train: Dataset, test: Dataset, model: TorchClassifier, seed: int = 0) -> PoisonResult:
    return build(name, test)(train, rate=RATE, seed=seed, model=model)


@pytest.mark.parametrize("name", sorted(POISONS))
def test_poisons_exactly_round_rate_n_and_keeps_everything_else(
    name: str, digits_train: Dataset, digits_test: Dataset, clean_model: TorchClassifier
) -> None:
    x_before, y_before = digits_train.x.clone(), digits_train.y.clone()
    result = run(name, digits_train, digits_test, clean_model)
    n, count = len(digits_train), round(RATE * len(digits_train))
    assert torch.equal(digits_train.x, x_before) and torch.equal(digits_train.y, y_before)  # input not mutated
    assert result.attack == name and result.count == count
    assert torch.equal(result.indices, result.indices.unique())  # sorted, no repeats
    poisoned = torch.zeros(len(result.data), dtype=torch.bool)
    poisoned[result.indices] = True
    if result.added:
        assert len(result.data) == n + count and torch.equal(result.indices, torch.arange(n, n + count))
        assert torch.equal(result.data.x[:n], x_before) and torch.equal(result.data.y[:n], y_before)
    else:
        assert len(result.data) == n
        assert torch.equal(result.data.x, x_before)  # label flips change labels only
        assert torch.equal(result.data.y[~poisoned], y_before[~poisoned])
        assert bool((result.data.y[poisoned] != y_before[poisoned]).all())
    result.data.validate(num_classes=10, input_shape=digits_train.input_shape)  # inside the bounds, labels valid
    assert result.data.x.dtype == torch.float32 and result.data.y.dtype == torch.int64


@pytest.mark.parametrize("name", sorted(POISONS))
def test_deterministic_under_a_seed(
    name: str, digits_train: Dataset, digits_test: Dataset, clean_model: TorchClassifier
) -> None:
    first = run(name, digits_train, digits_test, clean_model, seed=3)
    again = run(name, digits_train, digits_test, clean_model, seed=3)
    assert torch.equal(first.indices, again.indices)
    assert torch.equal(first.data.x, again.data.x) and torch.equal(first.data.y, again.data.y)
    if name != "label-flip-loss":  # the costliest flips do not depend on the seed (it only breaks ties)
        other = run(name, digits_train, digits_test, clean_model, seed=4)
        assert not torch.equal(first.data.x, other.data.x) or not torch.equal(first.data.y, other.data.y)


@pytest.mark.parametrize("rate", [0.0, 1.0, -0.1, 1.5])
@pytest.mark.parametrize("name", sorted(POISONS))
def test_a_rate_outside_0_1_is_refused(name: str, rate: float, digits_train: Dataset, digits_test: Dataset) -> None:
    with pytest.raises(ConfigError, match=rf"expected a poison rate in \(0, 1\), got {rate}"):
        build(name, digits_test)(digits_train, rate=rate, seed=0)


def test_a_rate_that_poisons_nothing_is_refused(digits_train: Dataset) -> None:
    with pytest.raises(ConfigError, match="poisons no example of 1437"):
        make_poison("label-flip")(digits_train, rate=1e-4, seed=0)


def test_unknown_names_and_options_are_refused() -> None:
    with pytest.raises(ConfigError, match="unknown poisoning attack 'nope': expected one of backdoor, backdoor-blend"):
        make_poison("nope")
    with pytest.raises(ConfigError, match="bad options for poisoning attack 'backdoor'"):
        make_poison("backdoor", colour="red")


def test_every_registered_attack_follows_the_protocol() -> None:
    for name, cls in POISONS.items():
        attack = cls()
        assert isinstance(attack, PoisonAttack), name
        assert cls.name == name  # type: ignore[attr-defined]
        assert cls.__doc__ and cls.__doc__.strip(), name
