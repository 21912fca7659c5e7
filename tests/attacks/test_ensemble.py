"""The AutoAttack-style cascade: per-example worst case, later attacks see only survivors, Square last."""

from __future__ import annotations

import torch

from bastion.attacks import PGD
from bastion.attacks.ensemble import STANDARD_CASCADE, Ensemble
from bastion.data import load_demo
from bastion.demo import demo_model
from bastion.models import restrict


def test_standard_cascade_order() -> None:
    assert STANDARD_CASCADE == ("apgd-ce", "apgd-t", "square")


def test_cascade_is_at_least_as_strong_as_its_first_member() -> None:
    model = demo_model("digits")
    test = load_demo("digits", "test")
    x, y = test.x[:64], test.y[:64]
    small = {"apgd-ce": {"steps": 20}, "apgd-t": {"steps": 20, "n_target_classes": 2}, "square": {"max_queries": 200}}
    cascade = Ensemble(options=small)(model, x, y, norm="linf", eps=0.1, seed=0)
    first = Ensemble(attacks=("apgd-ce",), options=small)(model, x, y, norm="linf", eps=0.1, seed=0)
    pgd = PGD(steps=20)(model, x, y, norm="linf", eps=0.1, seed=0)
    assert cascade.success_rate >= first.success_rate
    assert cascade.success_rate >= pgd.success_rate - 2 / 64
    assert bool((cascade.distance <= 0.1 + 1e-5).all())


def test_scores_only_model_runs_only_square() -> None:
    model = demo_model("digits")
    test = load_demo("digits", "test")
    x, y = test.x[:32], test.y[:32]
    view = restrict(model, "scores")
    model.queries.forward = model.queries.backward = 0
    result = Ensemble(options={"square": {"max_queries": 300}})(view, x, y, norm="linf", eps=0.2, seed=1)
    assert model.queries.backward == 0  # no gradient attack could have run
    assert result.success_rate > 0.3
    assert int(result.queries.sum()) == model.queries.forward
    assert torch.equal(result.gradients, torch.zeros_like(result.gradients))
