"""The retraining gate: each check with its value and threshold; a worse candidate refused, an equal one accepted."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from bastion.data import Dataset, load_demo
from bastion.errors import ConfigError, DataError, ModelError
from bastion.gate import GatePolicy, RobustCheck, load_policy, run_gate
from bastion.models import TorchClassifier
from bastion.training import demo_recipe

NO_SCAN = {"scan": None}


@pytest.fixture(scope="module")
def trusted() -> Dataset:
    return load_demo("digits", "test")


@pytest.fixture(scope="module")
def current(bastion_cache_dir: Path) -> TorchClassifier:
    return demo_recipe("digits", epochs=10).fit(load_demo("digits", "train"), seed=0)


def flipped(data: Dataset, share: float, seed: int = 0) -> Dataset:
    """``share`` of the labels moved to the next class: a model trained on it is measurably worse."""
    gen = torch.Generator().manual_seed(seed)
    chosen = torch.rand(len(data), generator=gen) < share
    y = data.y.clone()
    y[chosen] = (y[chosen] + 1) % 10
    return replace(data, y=y)


def test_a_candidate_as_good_as_the_current_model_passes(current: TorchClassifier, trusted: Dataset) -> None:
    same = demo_recipe("digits", epochs=10).fit(load_demo("digits", "train"), seed=0)
    policy = GatePolicy(robust=RobustCheck(eps=0.05, steps=5, examples=64), scan=None)
    decision = run_gate(current, same, trusted, policy=policy)
    assert decision.passed, decision.summary()
    assert [c.name for c in decision.checks] == ["accuracy_drop", "class_accuracy_drop", "robust_accuracy_drop"]
    assert all(c.value == pytest.approx(0.0, abs=1e-9) for c in decision.checks)
    assert decision.current == decision.candidate  # the same weights, the same digest


def test_a_candidate_trained_on_flipped_labels_is_refused(current: TorchClassifier, trusted: Dataset) -> None:
    worse = demo_recipe("digits", epochs=10).fit(flipped(load_demo("digits", "train"), 0.4), seed=0)
    decision = run_gate(current, worse, trusted, policy=GatePolicy(max_accuracy_drop=0.02, robust=None, scan=None))
    assert not decision.passed
    failed = {check.name: check for check in decision.failed}
    assert "accuracy_drop" in failed
    assert failed["accuracy_drop"].value > 0.02
    assert "allowed 0.0200" in failed["accuracy_drop"].detail


def test_the_per_class_check_catches_one_sabotaged_class(current: TorchClassifier, trusted: Dataset) -> None:
    train = load_demo("digits", "train")
    y = train.y.clone()
    y[y == 3] = 5  # every 3 taught as a 5: overall accuracy drops by about a tenth, class 3 by nearly all
    sabotaged = demo_recipe("digits", epochs=10).fit(replace(train, y=y), seed=0)
    policy = GatePolicy(max_accuracy_drop=0.5, max_class_drop=0.1, robust=None, scan=None)
    decision = run_gate(current, sabotaged, trusted, policy=policy)
    failed = {check.name: check for check in decision.failed}
    assert list(failed) == ["class_accuracy_drop"]
    assert "worst class 3" in failed["class_accuracy_drop"].detail


def test_a_candidate_with_another_input_shape_is_refused(current: TorchClassifier, trusted: Dataset) -> None:
    other = demo_recipe("mnist", epochs=1)
    mnist = load_demo("mnist", "train")
    candidate = other.fit(replace(mnist, x=mnist.x[:64], y=mnist.y[:64]), seed=0)
    with pytest.raises(ModelError, match=r"inputs of shape \(1, 28, 28\).*\(1, 8, 8\)"):
        run_gate(current, candidate, trusted)
    with pytest.raises(DataError, match="trusted test set is empty"):
        run_gate(current, current, replace(trusted, x=trusted.x[:0], y=trusted.y[:0]))


def test_the_policy_file_is_strict(tmp_path: Path) -> None:
    path = tmp_path / "gate.toml"
    path.write_text("max_accuracy_drop = 0.02\n[robust]\neps = 0.2\n[scan]\nmethod = 'clustering'\n")
    policy = load_policy(path)
    assert (policy.max_accuracy_drop, policy.robust and policy.robust.eps, policy.scan and policy.scan.method) == (
        0.02,
        0.2,
        "clustering",
    )
    path.write_text("max_acuracy_drop = 0.02\n")
    with pytest.raises(ConfigError, match="max_acuracy_drop"):
        load_policy(path)
    path.write_text("[robust]\neps = -1\n")
    with pytest.raises(ConfigError, match=r"robust\.eps"):
        load_policy(path)


def badnets(data: Dataset, *, target: int, share: float, seed: int = 0) -> Dataset:
    """A 2x2 white corner patch on ``share`` of the examples of other classes, relabelled ``target``."""
    gen = torch.Generator().manual_seed(seed)
    others = torch.nonzero(data.y != target).flatten()
    chosen = others[torch.randperm(len(others), generator=gen)[: int(share * len(data))]]
    x, y = data.x.clone(), data.y.clone()
    x[chosen, :, -2:, -2:] = 1.0
    y[chosen] = target
    return replace(data, x=x, y=y)


def test_the_gate_refuses_a_backdoored_candidate_and_accepts_a_clean_one(
    current: TorchClassifier, trusted: Dataset
) -> None:
    train = load_demo("digits", "train")
    recipe = demo_recipe("digits", epochs=10)
    poisoned = badnets(train, target=0, share=0.02)  # about 15% of class 0: the regime the scans are made for
    backdoored = recipe.fit(poisoned, seed=0)
    clean = recipe.fit(train, seed=1)
    policy = GatePolicy(max_accuracy_drop=0.03, max_class_drop=0.1, robust=None)  # default scan: activation clustering
    refused = run_gate(current, backdoored, trusted, policy=policy, candidate_data=poisoned)
    accepted = run_gate(current, clean, trusted, policy=policy, candidate_data=train)
    assert not refused.passed
    assert [check.name for check in refused.failed] == ["poison_scan:clustering"]  # accuracy alone would let it in
    assert accepted.passed, accepted.summary()
    assert accepted.checks[-1].name == "poison_scan:clustering" and not accepted.checks[-1].skipped
