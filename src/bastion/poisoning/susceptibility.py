"""The poisoning susceptibility assessment: poison the training data, retrain with the user's recipe, measure.

For each attack and each poison rate the training set is poisoned, a model is trained on it with
the recipe (real training, the same seed as the clean model, so the poison is the only
difference), and the model is measured on the clean test set: clean accuracy, accuracy on the
targeted class (targeted attacks), and attack success (the backdoor's success rate on triggered
test inputs of other classes; the feature-collision target classified as the base class; the
targeted class's test inputs classified as the attacker's label). Each attack's curve starts at
rate 0 with the clean model measured the same way, e.g. the clean model's (near-zero) rate of
sending triggered inputs to the target label.

Example::

    report = assess_poisoning(demo_recipe("digits"), train, test, attacks=["backdoor"], rates=[0.05, 0.1], seed=0)
    write_poisoning_report(report, "reports/poison")
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from bastion.data.dataset import Dataset
from bastion.errors import BastionError, ConfigError, DataError, ModelError
from bastion.models.interface import Classifier
from bastion.poisoning.interface import PoisonAttack, PoisonResult, check_label
from bastion.poisoning.registry import POISONS, make_poison
from bastion.report.poisoning import DataSummary, PoisonAttackSummary, PoisoningReport, PoisonRun
from bastion.training.recipe import Recipe

__all__ = ["DEFAULT_ATTACKS", "DEFAULT_RATES", "assess_poisoning"]

logger = logging.getLogger(__name__)

# Small enough that `bastion poison` on the digits demo finishes in about a minute on two cores.
DEFAULT_ATTACKS = ("label-flip", "label-flip-loss", "backdoor")
DEFAULT_RATES = (0.05, 0.1, 0.2)
# Rows predicted per forward pass when measuring.
MEASURE_BATCH = 1024


def assess_poisoning(
    recipe: Recipe,
    train: Dataset,
    test: Dataset,
    *,
    attacks: Sequence[str] = DEFAULT_ATTACKS,
    rates: Sequence[float] = DEFAULT_RATES,
    seed: int = 0,
    epochs: int | None = None,
    source: int = 0,
    target: int = 1,
    options: Mapping[str, Mapping[str, Any]] | None = None,
) -> PoisoningReport:
    """Clean accuracy and attack success of models retrained on poisoned data, per attack and rate.

    ``source`` is the class targeted attacks aim at (a targeted flip's source, the feature-collision
    target's class) and ``target`` the label the attacker wants (the flip's and backdoor's target,
    the collision's base class). ``options`` overrides an attack's hyper-parameters by name, e.g.
    ``{"backdoor": {"size": 2}}``. ``epochs`` overrides the recipe's own.
    """
    started = time.perf_counter()
    names, rates = _check_request(attacks, rates, source, target)
    _check_data(train, test, getattr(recipe, "input_shape", None), getattr(recipe, "num_classes", None))
    clean, clean_seconds = _fit(recipe, train, seed, epochs)
    _check_data(train, test, clean.input_shape, clean.num_classes)
    check_label(source, clean.num_classes, "source")
    check_label(target, clean.num_classes, "target")
    configured = {name: _configure(name, source, target, clean, test, seed, options or {}) for name in names}
    # Every poisoned set first, so that a rate an attack cannot serve fails before the retraining starts.
    poisoned = {
        (name, rate): attack(train, rate=rate, seed=seed, model=clean)
        for name, (attack, _) in configured.items()
        for rate in rates
    }
    runs: list[PoisonRun] = []
    for name in names:
        runs.append(_measure(clean, test, poisoned[name, rates[0]], rate=0.0, seconds=clean_seconds, baseline=True))
        for rate in rates:
            result = poisoned[name, rate]
            model, seconds = _fit(recipe, result.data, seed, epochs)
            runs.append(_measure(model, test, result, rate=rate, seconds=seconds))
            logger.info("%s at rate %g: clean accuracy %.1f%%", name, rate, 100 * runs[-1].clean_accuracy)
    return PoisoningReport(
        recipe=recipe.name,
        train=_summary(train, clean.num_classes),
        test=_summary(test, clean.num_classes),
        rates=rates,
        seed=seed,
        epochs=epochs,
        baseline_accuracy=runs[0].clean_accuracy,
        attacks=tuple(_attack_summary(name, *configured[name], poisoned[name, rates[0]]) for name in names),
        runs=tuple(runs),
        elapsed=time.perf_counter() - started,
    )


def _check_request(
    attacks: Sequence[str], rates: Sequence[float], source: int, target: int
) -> tuple[tuple[str, ...], tuple[float, ...]]:
    """Known attack names (duplicates dropped) and rates in (0, 1), ascending."""
    names = tuple(dict.fromkeys(attacks))
    if not names:
        raise ConfigError(f"expected at least one poisoning attack, one of {', '.join(sorted(POISONS))}")
    unknown = [name for name in names if name not in POISONS]
    if unknown:
        raise ConfigError(f"unknown poisoning attack {unknown[0]!r}: expected one of {', '.join(sorted(POISONS))}")
    if not rates:
        raise ConfigError("expected at least one poison rate in (0, 1)")
    for rate in rates:
        if not 0.0 < rate < 1.0:
            raise ConfigError(f"expected poison rates in (0, 1), got {rate}")
    if source == target:
        raise ConfigError(
            f"expected source (the targeted class) and target (the attacker's label) to differ, got {source}"
        )
    return names, tuple(sorted(set(rates)))


def _check_data(train: Dataset, test: Dataset, input_shape: object, num_classes: object) -> None:
    """Train and test fit each other and, where known, the recipe's input shape and classes."""
    if train.input_shape != test.input_shape:
        raise DataError(f"training inputs have shape {train.input_shape}, test inputs {test.input_shape}")
    shape = tuple(input_shape) if isinstance(input_shape, (tuple, list)) else None
    classes = num_classes if isinstance(num_classes, int) else None
    for data in (train, test):
        data.validate(num_classes=classes, input_shape=shape)


def _fit(recipe: Recipe, data: Dataset, seed: int, epochs: int | None) -> tuple[Classifier, float]:
    """A model trained by ``recipe``; a failure of the recipe's own code becomes a ModelError naming it."""
    started = time.perf_counter()
    try:
        model = recipe.fit(data, seed=seed, epochs=epochs)
    except BastionError:
        raise
    except Exception as error:  # the user's training code: any failure is reported, not a traceback
        raise ModelError(f"recipe {recipe.name} failed on {data.name}: {type(error).__name__}: {error}") from error
    return model, time.perf_counter() - started


def _configure(
    name: str, source: int, target: int, clean: Classifier, test: Dataset, seed: int, options: Mapping[str, Any]
) -> tuple[PoisonAttack, dict[str, Any]]:
    """The attack aimed at ``source`` / ``target``, and the settings to report that its fields do not show."""
    aims: dict[str, dict[str, Any]] = {
        "label-flip-targeted": {"source": source, "target": target},
        "backdoor": {"target": target},
        "backdoor-blend": {"target": target},
        "feature-collision": {"base_label": target},
    }
    settings = {**aims.get(name, {}), **dict(options.get(name, {}))}
    noted: dict[str, Any] = {}
    if name == "feature-collision" and "target" not in settings:
        index = _collision_target(clean, test, source, seed)
        settings["target"] = test.x[index]
        noted["target_index"] = index
    return make_poison(name, **settings), noted


def _collision_target(model: Classifier, test: Dataset, source: int, seed: int) -> int:
    """A seeded choice among the test inputs of class ``source`` that the clean model gets right."""
    candidates = ((test.y.cpu() == source) & (_predict(model, test.x) == test.y.cpu())).nonzero().flatten()
    if not len(candidates):
        raise DataError(f"{test.name}: no test input of class {source} is classified correctly by the clean model")
    return int(candidates[torch.randint(len(candidates), (1,), generator=torch.Generator().manual_seed(seed))])


def _predict(model: Classifier, x: Tensor) -> Tensor:
    out = []
    with torch.no_grad(), model.inference():
        for start in range(0, len(x), MEASURE_BATCH):
            out.append(model.logits(x[start : start + MEASURE_BATCH].to(model.device)).argmax(dim=1).cpu())
    return torch.cat(out)


def _measure(
    model: Classifier, test: Dataset, result: PoisonResult, *, rate: float, seconds: float, baseline: bool = False
) -> PoisonRun:
    """The model's figures on the clean test set and against what ``result``'s attacker wants."""
    labels = test.y.cpu()
    predicted = _predict(model, test.x)
    targeted = None
    if result.source_label is not None and bool((labels == result.source_label).any()):
        targeted = float((predicted[labels == result.source_label] == result.source_label).float().mean())
    return PoisonRun(
        attack=result.attack,
        rate=rate,
        poisoned=0 if baseline else result.count,
        added=result.added,
        clean_accuracy=float((predicted == labels).float().mean()),
        targeted_class_accuracy=targeted,
        attack_success=_success(model, test, result, predicted),
        fit_seconds=seconds,
        details={} if baseline else dict(result.details),
    )


def _success(model: Classifier, test: Dataset, result: PoisonResult, predicted: Tensor) -> float | None:
    """What the attacker wanted, measured: see :func:`_success_metric` for each kind of attack."""
    labels, wanted = test.y.cpu(), result.target_label
    if wanted is None:
        return None
    if result.trigger is not None:
        others = test.x[(labels != wanted).to(test.x.device)]
        return float((_predict(model, result.trigger.apply(others)) == wanted).float().mean()) if len(others) else None
    if result.target_input is not None:
        return float(_predict(model, result.target_input.unsqueeze(0))[0] == wanted)
    if result.source_label is not None and bool((labels == result.source_label).any()):
        return float((predicted[labels == result.source_label] == wanted).float().mean())
    return None


def _success_metric(result: PoisonResult) -> str | None:
    if result.target_label is None:
        return None
    if result.trigger is not None:
        return f"share of triggered test inputs of other classes classified as {result.target_label}"
    if result.target_input is not None:
        return f"1 when the target input (class {result.source_label}) is classified as {result.target_label}, else 0"
    return f"share of class {result.source_label} test inputs classified as {result.target_label}"


def _attack_summary(
    name: str, attack: PoisonAttack, noted: dict[str, Any], result: PoisonResult
) -> PoisonAttackSummary:
    doc = (type(attack).__doc__ or name).strip().splitlines()[0]
    config = {
        field.name: getattr(attack, field.name)
        for field in dataclasses.fields(attack)  # type: ignore[arg-type]
        if isinstance(getattr(attack, field.name), (bool, int, float, str))
    }
    return PoisonAttackSummary(
        name=name,
        description=doc,
        config={**config, **noted},
        target_label=result.target_label,
        targeted_class=result.source_label,
        success_metric=_success_metric(result),
    )


def _summary(data: Dataset, num_classes: int) -> DataSummary:
    return DataSummary(name=data.name, n_examples=len(data), input_shape=data.input_shape, num_classes=num_classes)
