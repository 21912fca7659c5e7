"""Conformance suite: every registered attack, under every norm it supports, keeps the Attack contract."""

from __future__ import annotations

import copy
import dataclasses
import inspect
import re
import sys

import pytest
import torch
from torch import Tensor

from bastion.attacks import ATTACKS, Attack, AttackResult
from bastion.data import Dataset
from bastion.errors import ConfigError
from bastion.models import TorchClassifier, predict
from bastion.norms import get_norm

# Small but non-trivial budgets, so the whole matrix runs in seconds; set only where the field exists.
SMALL_SETTINGS = {"steps": 5, "binary_search_steps": 3, "restarts": 2}
# Radii that fool some but not all of the 64 digits (1x8x8 inputs in [0, 1]).
EPS = {"linf": 0.1, "l2": 1.0, "l1": 4.0}
TOL = 1e-5
N = 16


def build(name: str) -> Attack:
    """The registered attack with its defaults, then the small settings where it has those fields."""
    attack = ATTACKS[name]()
    if dataclasses.is_dataclass(attack):
        fields = {f.name for f in dataclasses.fields(attack)}
        small = {k: v for k, v in SMALL_SETTINGS.items() if k in fields}
        attack = dataclasses.replace(attack, **small)
    return attack


CASES = [pytest.param(name, norm, id=f"{name}-{norm}") for name in ATTACKS for norm in build(name).norms]


@pytest.fixture
def model(digits_model: TorchClassifier) -> TorchClassifier:
    """A private copy of the digits CNN: tests change its modes and counters freely."""
    return TorchClassifier(
        copy.deepcopy(digits_model.module),
        input_shape=digits_model.input_shape,
        num_classes=digits_model.num_classes,
        bounds=digits_model.bounds,
        name="digits-copy",
    )


@pytest.fixture
def data(digits_data: Dataset) -> tuple[Tensor, Tensor]:
    return digits_data.x[:N], digits_data.y[:N]


def run(attack: Attack, model: TorchClassifier, x: Tensor, y: Tensor, norm: str, **kw: object) -> AttackResult:
    """Call with the norm's radius (``eps=None`` may be passed explicitly for minimal attacks)."""
    eps = kw.pop("eps", EPS[norm])
    return attack(model, x, y, norm=norm, eps=eps, **kw)  # type: ignore[arg-type]


def modes(model: TorchClassifier) -> list[bool]:
    return [m.training for m in model.module.modules()]


def test_registry_keys_are_sorted_and_unique() -> None:
    keys = list(ATTACKS)
    assert keys == sorted(set(keys))
    assert keys, "no attack is registered"


@pytest.mark.parametrize("name", list(ATTACKS))
def test_registered_name_matches_the_attack(name: str) -> None:
    attack = build(name)
    assert isinstance(attack, Attack)
    assert attack.name == name
    assert attack.norms, f"{name} declares no norm"
    assert set(attack.norms) <= {"linf", "l2", "l1"}


@pytest.mark.parametrize("name", list(ATTACKS))
def test_attack_cites_its_paper(name: str) -> None:
    # The project's convention puts the paper and link in the module docstring (one attack = one module);
    # the class must still have its own one-line docstring.
    cls = type(ATTACKS[name]())
    own_doc = cls.__dict__.get("__doc__") or ""
    assert own_doc.strip(), f"{cls.__name__} has no docstring of its own"
    text = own_doc + (sys.modules[cls.__module__].__doc__ or "")
    assert re.search(r"http|arXiv|\b(19|20)\d\d\b", text), f"{cls.__name__}'s docstrings cite no paper"


@pytest.mark.parametrize(("name", "norm"), CASES)
def test_shapes_dtypes_ball_and_bounds(name: str, norm: str, model: TorchClassifier, data: tuple[Tensor, Tensor]) -> None:
    x, y = data
    attack = build(name)
    result = run(attack, model, x, y, norm)
    n = x.shape[0]
    assert result.x_adv.shape == x.shape
    assert result.x_adv.dtype == x.dtype
    assert result.success.shape == (n,) and result.success.dtype == torch.bool
    assert result.predictions.shape == (n,) and result.predictions.dtype == torch.int64
    assert result.distance.shape == (n,)
    assert result.queries.shape == (n,) and result.queries.dtype == torch.int64
    assert result.gradients.shape == (n,) and result.gradients.dtype == torch.int64
    assert result.attack == name and result.norm == norm and result.eps == EPS[norm]
    lo, hi = model.bounds
    assert float(result.x_adv.min()) >= lo and float(result.x_adv.max()) <= hi
    assert torch.isfinite(result.x_adv).all()
    distance = get_norm(norm).distance(result.x_adv, x)
    torch.testing.assert_close(result.distance, distance)
    if not attack.minimal:
        assert float(distance.max()) <= EPS[norm] + TOL
    # Success is only ever claimed inside the ball.
    assert bool((distance[result.success] <= EPS[norm] + TOL).all())


@pytest.mark.parametrize(("name", "norm"), CASES)
def test_minimal_attack_without_eps(name: str, norm: str, model: TorchClassifier, data: tuple[Tensor, Tensor]) -> None:
    x, y = data
    attack = build(name)
    if not attack.minimal:
        with pytest.raises(ConfigError, match="needs an epsilon"):
            run(attack, model, x, y, norm, eps=None)
        return
    result = run(attack, model, x, y, norm, eps=None)
    assert result.eps is None
    lo, hi = model.bounds
    assert float(result.x_adv.min()) >= lo and float(result.x_adv.max()) <= hi
    assert torch.equal(result.success, predict(model, result.x_adv) != y)


@pytest.mark.parametrize(("name", "norm"), CASES)
def test_inputs_not_mutated(name: str, norm: str, model: TorchClassifier, data: tuple[Tensor, Tensor]) -> None:
    x, y = data[0].clone(), data[1].clone()
    targets = (y + 1) % model.num_classes
    x0, y0, t0 = x.clone(), y.clone(), targets.clone()
    attack = build(name)
    run(attack, model, x, y, norm)
    assert torch.equal(x, x0) and torch.equal(y, y0)
    if _accepts_targets(attack, model, x, y, norm, targets):
        assert torch.equal(targets, t0)


@pytest.mark.parametrize(("name", "norm"), CASES)
def test_same_seed_same_result(name: str, norm: str, model: TorchClassifier, data: tuple[Tensor, Tensor]) -> None:
    x, y = data
    attack = build(name)
    first = run(attack, model, x, y, norm, seed=7)
    second = run(attack, model, x, y, norm, seed=7)
    assert torch.equal(first.x_adv, second.x_adv)
    assert torch.equal(first.success, second.success)
    assert torch.equal(first.queries, second.queries)


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize(("name", "norm"), CASES)
def test_model_mode_restored(
    name: str, norm: str, training: bool, model: TorchClassifier, data: tuple[Tensor, Tensor]
) -> None:
    model.module.train(training)
    before = modes(model)
    run(build(name), model, *data, norm)
    assert modes(model) == before


@pytest.mark.parametrize(("name", "norm"), CASES)
def test_query_counts_are_exact(name: str, norm: str, model: TorchClassifier, data: tuple[Tensor, Tensor]) -> None:
    x, y = data
    model.queries.forward = model.queries.backward = 0
    result = run(build(name), model, x, y, norm)
    assert int(result.queries.sum()) == model.queries.forward
    assert int(result.gradients.sum()) == model.queries.backward
    assert bool((result.queries >= 1).all()), "every example needs at least the final check"
    assert bool((result.gradients >= 0).all())


@pytest.mark.parametrize(("name", "norm"), CASES)
def test_success_agrees_with_a_fresh_prediction(
    name: str, norm: str, model: TorchClassifier, data: tuple[Tensor, Tensor]
) -> None:
    x, y = data
    result = run(build(name), model, x, y, norm)
    with model.inference():
        fresh = predict(model, result.x_adv)
    assert torch.equal(result.predictions, fresh)
    inside = get_norm(norm).distance(result.x_adv, x) <= EPS[norm] + TOL
    assert torch.equal(result.success, (fresh != y) & inside)


@pytest.mark.parametrize(("name", "norm"), CASES)
def test_already_misclassified_counts_as_success(
    name: str, norm: str, model: TorchClassifier, data: tuple[Tensor, Tensor]
) -> None:
    x, _ = data
    wrong = (predict(model, x) + 1) % model.num_classes  # labels the model already gets wrong
    attack = build(name)
    if attack.targeted_only:
        pytest.skip(f"{name} is targeted only")
    result = run(attack, model, x, wrong, norm)
    assert bool(result.success.all()), f"{int((~result.success).sum())} misclassified examples not reported"


@pytest.mark.parametrize(("name", "norm"), CASES)
def test_targeted_success_means_target_hit(
    name: str, norm: str, model: TorchClassifier, data: tuple[Tensor, Tensor]
) -> None:
    x, y = data
    targets = (y + 1) % model.num_classes
    attack = build(name)
    if not _accepts_targets(attack, model, x, y, norm, targets):
        pytest.skip(f"{name} is untargeted only")
    result = run(attack, model, x, y, norm, targets=targets)
    with model.inference():
        fresh = predict(model, result.x_adv)
    inside = get_norm(norm).distance(result.x_adv, x) <= EPS[norm] + TOL
    assert torch.equal(result.success, (fresh == targets) & inside)


def test_targeted_only_attack_without_targets_is_refused(model: TorchClassifier, data: tuple[Tensor, Tensor]) -> None:
    for name in ATTACKS:
        attack = build(name)
        if attack.targeted_only:
            with pytest.raises(ConfigError, match="targeted attack: pass targets"):
                run(attack, model, *data, attack.norms[0])


@pytest.mark.parametrize("name", list(ATTACKS))
def test_unsupported_norm_is_refused(name: str, model: TorchClassifier, data: tuple[Tensor, Tensor]) -> None:
    attack = build(name)
    missing = [n for n in ("linf", "l2", "l1") if n not in attack.norms]
    if not missing:
        pytest.skip(f"{name} supports every norm")
    with pytest.raises(ConfigError, match=f"does not support the {missing[0]} norm"):
        attack(model, *data, norm=missing[0], eps=EPS[missing[0]])


def _accepts_targets(attack: Attack, model: TorchClassifier, x: Tensor, y: Tensor, norm: str, t: Tensor) -> bool:
    """Whether the attack takes targets: targeted-only ones do; others say so by raising ConfigError."""
    if attack.targeted_only:
        return True
    params = inspect.signature(type(attack).__call__).parameters
    if "targets" not in params:
        return False
    try:
        run(attack, model, x[:2], y[:2], norm, targets=t[:2])
    except ConfigError as exc:
        if "target" not in str(exc):
            raise
        return False
    return True
