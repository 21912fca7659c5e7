"""Every registered attack honours tabular feature constraints: ranges kept, immutable features untouched."""

from __future__ import annotations

import pytest
import torch
from test_attacks import EPS, build  # the conformance suite's small settings (rootdir on sys.path)

from bastion.attacks import ATTACKS
from bastion.data import load_demo
from bastion.demo import demo_model
from bastion.errors import ConfigError
from bastion.models import TorchClassifier

N = 24


@pytest.fixture(scope="module")
def tabular() -> TorchClassifier:
    return demo_model("breast-cancer")


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_attack_honours_constraints(name: str, tabular: TorchClassifier) -> None:
    data = load_demo("breast-cancer", "test")
    constraints = data.constraints
    assert constraints is not None
    attack = build(name)
    norm = attack.norms[0]
    x, y = data.x[:N], data.y[:N]
    try:
        result = attack(tabular, x, y, norm=norm, eps=EPS[norm], seed=3, constraints=constraints)
    except ConfigError as exc:  # APGD-DLR / APGD-T need 3 / 4 classes, Square needs images: a clear refusal
        if "at least" not in str(exc) and "image inputs" not in str(exc):
            raise
        pytest.skip(str(exc))
    immutable = list(constraints.immutable)
    assert torch.equal(result.x_adv[:, immutable], x[:, immutable])
    assert not bool(constraints.violations(result.x_adv, x).any())
    changed = constraints.changed(result.x_adv, x)
    assert not bool(changed[:, immutable].any())


def test_without_constraints_immutable_features_do_move(tabular: TorchClassifier) -> None:
    """The check above could not pass by accident: unconstrained PGD does move the protected features."""
    data = load_demo("breast-cancer", "test")
    result = build("pgd")(tabular, data.x[:N], data.y[:N], norm="linf", eps=0.1, seed=3)
    assert data.constraints is not None
    assert bool(data.constraints.changed(result.x_adv, data.x[:N])[:, list(data.constraints.immutable)].any())
