"""Conformance suite: every registered attack, under every norm it supports, keeps the Attack contract.

One standard run per (attack, norm) is shared by the checks that only inspect it (shapes, ball,
bounds, inputs, modes, query counts, success flags); the other checks make their own calls.
"""

from __future__ import annotations

import copy
import dataclasses
import re
import sys
from dataclasses import dataclass

import pytest
import torch
from torch import Tensor

from bastion.attacks import ATTACKS, Attack, AttackResult
from bastion.data import Dataset
from bastion.errors import ConfigError
from bastion.models import TorchClassifier, predict
from bastion.norms import get_norm

# Small but non-trivial budgets, so the whole matrix runs in seconds; set only where the field exists.
SMALL_SETTINGS = {
    "steps": 5,
    "binary_search_steps": 3,
    "restarts": 2,
    "n_target_classes": 2,
    "max_queries": 100,
}
# Radii that fool some but not all of the digits (1x8x8 inputs in [0, 1]).
EPS = {"linf": 0.1, "l2": 1.0, "l1": 4.0}
TOL = 1e-5
N = 16
SEED = 7


def build(name: str) -> Attack:
    """The registered attack with its defaults, then the small settings where it has those fields."""
    attack = ATTACKS[name]()
    if not dataclasses.is_dataclass(attack):
        return attack
    small: dict[str, object] = _small_settings(attack)
    if isinstance(getattr(attack, "attacks", None), tuple) and isinstance(getattr(attack, "options", None), dict):
        # An ensemble builds its members from the registry: pass the small settings on to each of them.
        small["options"] = {m: _small_settings(ATTACKS[m]()) for m in attack.attacks if m in ATTACKS}
    return dataclasses.replace(attack, **small)


def _small_settings(attack: Attack) -> dict[str, object]:
    fields = {f.name for f in dataclasses.fields(attack)}
    return {k: v for k, v in SMALL_SETTINGS.items() if k in fields}


CASES = [pytest.param(name, norm, id=f"{name}-{norm}") for name in ATTACKS for norm in build(name).norms]


def fresh_model(digits_model: TorchClassifier) -> TorchClassifier:
    """A private copy of the digits CNN: its modes and counters are the test's own."""
    return TorchClassifier(
        copy.deepcopy(digits_model.module),
        input_shape=digits_model.input_shape,
        num_classes=digits_model.num_classes,
        bounds=digits_model.bounds,
        name="digits-copy",
    )


def modes(model: TorchClassifier) -> list[bool]:
    return [m.training for m in model.module.modules()]


def inside(result: AttackResult, x: Tensor, norm: str) -> Tensor:
    return get_norm(norm).distance(result.x_adv, x) <= EPS[norm] + TOL


@dataclass(frozen=True)
class Run:
    """One call on a model in train mode with reset counters, and what was observed around it."""

    model: TorchClassifier
    x: Tensor
    y: Tensor
    x_before: Tensor
    y_before: Tensor
    modes_before: list[bool]
    modes_after: list[bool]
    forward: int
    backward: int
    result: AttackResult


@pytest.fixture(scope="module")
def standard_runs() -> dict[tuple[str, str], Run]:
    return {}


@pytest.fixture
def data(digits_data: Dataset) -> tuple[Tensor, Tensor]:
    return digits_data.x[:N].clone(), digits_data.y[:N].clone()


@pytest.fixture
def model(digits_model: TorchClassifier) -> TorchClassifier:
    return fresh_model(digits_model)


@pytest.fixture
def run(
    name: str,
    norm: str,
    standard_runs: dict[tuple[str, str], Run],
    digits_model: TorchClassifier,
    data: tuple[Tensor, Tensor],
) -> Run:
    """The standard run of ``name`` under ``norm``, made once per module."""
    if (name, norm) not in standard_runs:
        model = fresh_model(digits_model)
        model.module.train()
        x, y = data
        before = modes(model)
        x0, y0 = x.clone(), y.clone()
        model.queries.forward = model.queries.backward = 0
        result = build(name)(model, x, y, norm=norm, eps=EPS[norm], seed=SEED)
        standard_runs[name, norm] = Run(
            model, x, y, x0, y0, before, modes(model), model.queries.forward, model.queries.backward, result
        )
    return standard_runs[name, norm]


# --- the registry --------------------------------------------------------------------------------


def test_registry_keys_are_sorted_and_unique() -> None:
    keys = list(ATTACKS)
    assert keys, "no attack is registered"
    assert keys == sorted(set(keys))


@pytest.mark.parametrize("name", list(ATTACKS))
def test_registered_name_matches_the_attack(name: str) -> None:
    attack = build(name)
    assert isinstance(attack, Attack)
    assert attack.name == name
    assert attack.norms, f"{name} declares no norm"
    assert set(attack.norms) <= {"linf", "l2", "l1"}
    assert not (attack.targeted_only and attack.untargeted_only)


@pytest.mark.parametrize("name", list(ATTACKS))
def test_attack_cites_its_paper(name: str) -> None:
    # The project's convention puts the paper and link in the module docstring (one attack = one module);
    # the class must still have its own docstring.
    cls = type(ATTACKS[name]())
    own_doc = cls.__dict__.get("__doc__") or ""
    # A dataclass without a docstring gets its signature as one: that does not count.
    assert own_doc.strip() and not own_doc.startswith(f"{cls.__name__}("), f"{cls.__name__} has no docstring"
    text = own_doc + (sys.modules[cls.__module__].__doc__ or "")
    assert re.search(r"http|arXiv|\b(19|20)\d\d\b", text), f"{cls.__name__}'s docstrings cite no paper"


# --- checks on the standard run ------------------------------------------------------------------


@pytest.mark.parametrize(("name", "norm"), CASES)
def test_shapes_and_dtypes_kept(name: str, norm: str, run: Run) -> None:
    result, n = run.result, run.x.shape[0]
    assert result.x_adv.shape == run.x.shape
    assert result.x_adv.dtype == run.x.dtype
    assert result.success.shape == (n,) and result.success.dtype == torch.bool
    assert result.predictions.shape == (n,) and result.predictions.dtype == torch.int64
    assert result.distance.shape == (n,)
    assert result.queries.shape == (n,) and result.queries.dtype == torch.int64
    assert result.gradients.shape == (n,) and result.gradients.dtype == torch.int64
    assert (result.attack, result.norm, result.eps) == (name, norm, EPS[norm])


@pytest.mark.parametrize(("name", "norm"), CASES)
def test_inside_the_ball_and_the_bounds(name: str, norm: str, run: Run) -> None:
    result, lo, hi = run.result, *run.model.bounds
    assert bool(torch.isfinite(result.x_adv).all())
    assert float(result.x_adv.min()) >= lo and float(result.x_adv.max()) <= hi
    distance = get_norm(norm).distance(result.x_adv, run.x)
    torch.testing.assert_close(result.distance, distance)
    if not build(name).minimal:
        assert float(distance.max()) <= EPS[norm] + TOL
    # A minimal attack may go further, but success is only ever claimed inside the ball.
    assert bool((distance[result.success] <= EPS[norm] + TOL).all())


@pytest.mark.parametrize(("name", "norm"), CASES)
def test_inputs_not_mutated(name: str, norm: str, run: Run) -> None:
    assert torch.equal(run.x, run.x_before)
    assert torch.equal(run.y, run.y_before)


@pytest.mark.parametrize(("name", "norm"), CASES)
def test_train_mode_restored(name: str, norm: str, run: Run) -> None:
    assert all(run.modes_before)
    assert run.modes_after == run.modes_before


@pytest.mark.parametrize(("name", "norm"), CASES)
def test_query_counts_are_exact(name: str, norm: str, run: Run) -> None:
    assert int(run.result.queries.sum()) == run.forward
    assert int(run.result.gradients.sum()) == run.backward
    assert bool((run.result.queries >= 1).all()), "every example needs at least the final check"
    assert bool((run.result.gradients >= 0).all())


@pytest.mark.parametrize(("name", "norm"), CASES)
def test_success_agrees_with_a_fresh_prediction(name: str, norm: str, run: Run) -> None:
    with run.model.inference():
        fresh = predict(run.model, run.result.x_adv)
    assert torch.equal(run.result.predictions, fresh)
    assert torch.equal(run.result.success, (fresh != run.y) & inside(run.result, run.x, norm))


# --- checks with calls of their own --------------------------------------------------------------


@pytest.mark.parametrize(("name", "norm"), CASES)
def test_same_seed_same_result_and_eval_mode_kept(
    name: str, norm: str, run: Run, model: TorchClassifier, data: tuple[Tensor, Tensor]
) -> None:
    model.module.eval()
    again = build(name)(model, *data, norm=norm, eps=EPS[norm], seed=SEED)
    assert not any(modes(model))
    assert torch.equal(again.x_adv, run.result.x_adv)
    assert torch.equal(again.success, run.result.success)
    assert torch.equal(again.queries, run.result.queries)


@pytest.mark.parametrize(("name", "norm"), CASES)
def test_already_misclassified_counts_as_success(
    name: str, norm: str, model: TorchClassifier, data: tuple[Tensor, Tensor]
) -> None:
    x, _ = data
    attack = build(name)
    if attack.targeted_only:
        pytest.skip(f"{name} is targeted only")
    wrong = (predict(model, x) + 1) % model.num_classes  # labels the model already gets wrong
    result = attack(model, x, wrong, norm=norm, eps=EPS[norm], seed=SEED)
    assert bool(result.success.all()), f"{int((~result.success).sum())} misclassified examples not reported"


@pytest.mark.parametrize(("name", "norm"), CASES)
def test_targeted_success_means_target_hit(
    name: str, norm: str, model: TorchClassifier, data: tuple[Tensor, Tensor]
) -> None:
    attack = build(name)
    if attack.untargeted_only:
        pytest.skip(f"{name} is untargeted only")
    x, y = data
    targets = (y + 1) % model.num_classes
    x0, y0, t0 = x.clone(), y.clone(), targets.clone()
    result = attack(model, x, y, norm=norm, eps=EPS[norm], targets=targets, seed=SEED)
    assert torch.equal(x, x0) and torch.equal(y, y0) and torch.equal(targets, t0)
    with model.inference():
        fresh = predict(model, result.x_adv)
    assert torch.equal(result.success, (fresh == targets) & inside(result, x, norm))


@pytest.mark.parametrize(("name", "norm"), CASES)
def test_eps_is_required_unless_minimal(
    name: str, norm: str, model: TorchClassifier, data: tuple[Tensor, Tensor]
) -> None:
    x, y = data
    attack = build(name)
    targets = (y + 1) % model.num_classes if attack.targeted_only else None
    if not attack.minimal:
        with pytest.raises(ConfigError, match="needs an epsilon"):
            attack(model, x, y, norm=norm, eps=None, targets=targets)
        return
    result = attack(model, x, y, norm=norm, eps=None, targets=targets, seed=SEED)
    assert result.eps is None
    lo, hi = model.bounds
    assert float(result.x_adv.min()) >= lo and float(result.x_adv.max()) <= hi
    fresh = predict(model, result.x_adv)
    assert torch.equal(result.success, fresh != y if targets is None else fresh == targets)


@pytest.mark.parametrize("name", list(ATTACKS))
def test_targets_refused_or_required(name: str, model: TorchClassifier, data: tuple[Tensor, Tensor]) -> None:
    x, y = data
    attack = build(name)
    norm = attack.norms[0]
    if attack.targeted_only:
        with pytest.raises(ConfigError, match="targeted attack: pass targets"):
            attack(model, x, y, norm=norm, eps=EPS[norm])
    elif attack.untargeted_only:
        with pytest.raises(ConfigError, match="untargeted attack: pass no targets"):
            attack(model, x, y, norm=norm, eps=EPS[norm], targets=(y + 1) % 10)
    else:
        pytest.skip(f"{name} takes targets or none")


@pytest.mark.parametrize("name", list(ATTACKS))
def test_unsupported_norm_is_refused(name: str, model: TorchClassifier, data: tuple[Tensor, Tensor]) -> None:
    attack = build(name)
    missing = [n for n in ("linf", "l2", "l1") if n not in attack.norms]
    if not missing:
        pytest.skip(f"{name} supports every norm")
    with pytest.raises(ConfigError, match=f"does not support the {missing[0]} norm"):
        attack(model, *data, norm=missing[0], eps=EPS[missing[0]])
