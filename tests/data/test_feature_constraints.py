"""Feature constraints: projection onto ranges, integers, one-hot groups and immutable features; JSON loading."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from bastion.data.constraints import FeatureConstraints, load_constraints
from bastion.errors import ConfigError, DataError, NotFoundError

NAMES = ("age", "income", "red", "green", "blue", "id")


def _constraints() -> FeatureConstraints:
    return FeatureConstraints(
        names=NAMES,
        lower=(18, 0, 0, 0, 0, 0),
        upper=(99, 1e6, 1, 1, 1, 1e9),
        integer=(0,),
        immutable=(5,),
        one_hot=((2, 3, 4),),
    )


def test_project_honours_every_constraint() -> None:
    c = _constraints()
    x = torch.tensor([[30.0, 5e4, 0, 1, 0, 42]])
    candidate = torch.tensor([[12.6, 2e6, 0.2, 0.3, 0.9, 7]])
    out = c.project(candidate, x)
    assert out.tolist() == [[18.0, 1e6, 0.0, 0.0, 1.0, 42.0]]
    assert not bool(c.violations(out, x).any()) and bool(c.violations(candidate, x).all())
    assert c.changed(out, x).tolist() == [[True, True, False, True, True, False]]
    assert out.dtype == candidate.dtype and candidate[0, 0] == 12.6  # not mutated


def test_rounding_of_integer_features() -> None:
    c = _constraints()
    x = torch.tensor([[30.0, 0, 1, 0, 0, 1]])
    assert c.project(torch.tensor([[40.4, 0, 1, 0, 0, 1]]), x)[0, 0] == 40.0


def test_bad_constraints_are_named() -> None:
    with pytest.raises(ConfigError, match=r"feature 'a': lower bound 2.0 is above upper bound 1.0"):
        FeatureConstraints(names=("a",), lower=(2.0,), upper=(1.0,))
    with pytest.raises(ConfigError, match=r"feature index 3 is out of range for 1 features"):
        FeatureConstraints(names=("a",), lower=(0.0,), upper=(1.0,), immutable=(3,))
    with pytest.raises(DataError, match=r"constraints cover 6 features, the inputs have 4"):
        _constraints().project(torch.zeros(2, 4), torch.zeros(2, 4))


def test_load_from_json_by_name(tmp_path: Path) -> None:
    spec = {"integer": ["age"], "immutable": ["id"], "one_hot": [["red", "green", "blue"]], "ranges": {"age": [18, 99]}}
    path = tmp_path / "c.json"
    path.write_text(json.dumps(spec))
    c = load_constraints(path, NAMES, (0.0,) * 6, (1e9,) * 6)
    assert c.integer == (0,) and c.immutable == (5,) and c.one_hot == ((2, 3, 4),)
    assert c.lower[0] == 18 and c.upper[0] == 99 and c.upper[1] == 1e9


def test_load_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"immutable": ["height"]}')
    with pytest.raises(ConfigError, match=r"unknown feature 'height'"):
        load_constraints(bad, NAMES, (0.0,) * 6, (1.0,) * 6)
    bad.write_text('{"frozen": []}')
    with pytest.raises(ConfigError, match=r"unknown keys \['frozen'\]"):
        load_constraints(bad, NAMES, (0.0,) * 6, (1.0,) * 6)
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_constraints(bad, NAMES, (0.0,) * 6, (1.0,) * 6)
    with pytest.raises(NotFoundError, match="constraints file not found"):
        load_constraints(tmp_path / "none.json", NAMES, (0.0,) * 6, (1.0,) * 6)
