"""bastion.assess end to end on the digits demo, and every bad input it must refuse clearly."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from bastion.data import Dataset, load_demo
from bastion.errors import ConfigError, DataError, NotFoundError, UnsafeModelError
from bastion.evaluation import assess
from bastion.models import TorchClassifier


@pytest.fixture(scope="module")
def quick() -> object:
    return assess("demo:digits", preset="quick", n_examples=64, epsilons=[0.05, 0.2], seed=3)


def test_figures_are_consistent(quick) -> None:  # type: ignore[no-untyped-def]
    a = quick
    assert a.data.n_examples == 64 and a.settings.epsilons == (0.05, 0.2)
    assert 0.8 < a.clean_accuracy <= 1.0
    for run in a.runs:
        assert 0.0 <= run.robust_accuracy <= a.clean_accuracy + 1e-9
        assert run.queries_max >= 1
    for worst in a.worst_case:
        at = [r.robust_accuracy for r in a.runs if math.isclose(r.eps, worst.eps)]
        # the per-example worst case is at most every single attack
        assert worst.robust_accuracy <= min(at) + 1e-9
        assert sum(worst.broken_by.values()) == round((a.clean_accuracy - worst.robust_accuracy) * 64)
    assert a.worst_case[1].robust_accuracy <= a.worst_case[0].robust_accuracy
    assert sum(row.n_examples for row in a.per_class) == 64
    assert all(len(e.clean) == 64 for e in a.examples)


def test_pgd_breaks_the_undefended_model_at_large_eps(quick) -> None:  # type: ignore[no-untyped-def]
    pgd = next(r for r in quick.runs if r.attack == "pgd" and r.eps == 0.2)
    assert pgd.robust_accuracy < 0.1


def test_same_seed_same_figures() -> None:
    a = assess("demo:digits", attacks=["pgd"], n_examples=32, epsilons=[0.1], seed=1, trust_checks=False)
    b = assess("demo:digits", attacks=["pgd"], n_examples=32, epsilons=[0.1], seed=1, trust_checks=False)
    assert [r.robust_accuracy for r in a.runs] == [r.robust_accuracy for r in b.runs]
    assert a.examples == b.examples


def test_thresholds_are_judged() -> None:
    a = assess(
        "demo:digits",
        attacks=["fgsm"],
        n_examples=32,
        epsilons=[0.3],
        fail_under=["robust_accuracy@0.3=0.9", "clean_accuracy=0.5"],
        trust_checks=False,
    )
    robust, clean = a.thresholds
    assert not robust.passed and clean.passed and not a.passed


def _digits(**changes: object) -> Dataset:
    d = load_demo("digits", "test")
    x, y = d.x[:16].clone(), d.y[:16].clone()
    return Dataset(x=changes.get("x", x), y=changes.get("y", y), bounds=(0.0, 1.0), name="bad")  # type: ignore[arg-type]


def test_data_errors_name_the_problem(digits_model: TorchClassifier) -> None:
    x = _digits().x
    nan = x.clone()
    nan[3, 0, 0, 0] = float("nan")
    with pytest.raises(DataError, match=r"1 inputs contain NaN or Inf \(first at index 3\)"):
        assess(digits_model, _digits(x=nan))
    with pytest.raises(DataError, match=r"within bounds \[0.0, 1.0\], found values in \[0, 2\]"):
        assess(digits_model, _digits(x=x * 2))
    with pytest.raises(DataError, match=r"label 12 is out of range for a model with 10 classes"):
        assess(digits_model, _digits(y=torch.full((16,), 12)))
    with pytest.raises(DataError, match=r"inputs have shape \(1, 4, 16\), but the model expects \(1, 8, 8\)"):
        assess(digits_model, _digits(x=x.reshape(16, 1, 4, 16)))
    with pytest.raises(DataError, match="empty"):
        assess(digits_model, Dataset(x=x[:0], y=torch.zeros(0, dtype=torch.long)))


def test_option_errors(digits_model: TorchClassifier) -> None:
    data = _digits()
    with pytest.raises(ConfigError, match=r"expected eps > 0, got -0.1"):
        assess(digits_model, data, epsilons=[-0.1])
    with pytest.raises(ConfigError, match=r"expected eps <= the input range 1 for linf, got 2.0"):
        assess(digits_model, data, epsilons=[2.0])
    with pytest.raises(ConfigError, match=r"unknown attack 'bim'"):
        assess(digits_model, data, attacks=["bim"])
    with pytest.raises(ConfigError, match=r"unknown preset 'fast'"):
        assess(digits_model, data, preset="fast")
    with pytest.raises(ConfigError, match=r"no CUDA device"):
        if torch.cuda.is_available():
            raise ConfigError("no CUDA device (skipped: this machine has one)")
        assess(digits_model, data, device="cuda")
    with pytest.raises(ConfigError, match="without data"):
        assess(Path("model.pt"))


def test_file_errors(tmp_path: Path) -> None:
    np.savez(tmp_path / "d.npz", x=np.zeros((4, 1, 8, 8), np.float32), y=np.zeros(4, np.int64))
    with pytest.raises(NotFoundError, match="model file not found"):
        assess(tmp_path / "missing.pt", tmp_path / "d.npz")
    with pytest.raises(NotFoundError, match="data not found"):
        assess(tmp_path / "missing.pt", tmp_path / "missing.npz")
    pickled = tmp_path / "model.pt"
    torch.save(torch.nn.Linear(64, 10), pickled)
    with pytest.raises(UnsafeModelError, match="pickled PyTorch checkpoint"):
        assess(pickled, tmp_path / "d.npz")


def test_tabular_demo_reports_features_changed_and_keeps_immutable(tmp_path: Path) -> None:
    from bastion.report import read_json

    a = assess("demo:breast-cancer", attacks=["pgd"], epsilons=[0.1], n_examples=60, out_dir=tmp_path)
    (run,) = a.runs
    assert run.success_rate > 0.3 and run.features_changed
    assert not {"mean radius", "radius error", "worst radius"} & set(run.features_changed)
    assert max(run.features_changed.values()) <= round(run.success_rate * a.clean_accuracy * 60)
    assert read_json(tmp_path / "report.json").runs[0].features_changed == run.features_changed
    assert "Features changed" in (tmp_path / "report.html").read_text()


def test_default_epsilons_come_from_the_data(tmp_path: Path) -> None:
    demo = assess("demo:digits", attacks=["fgsm"], n_examples=16, trust_checks=False)
    assert demo.settings.epsilons == (0.1, 0.2, 0.3)  # the bundled data's customary radii
    test = load_demo("digits", "test")
    np.savez(tmp_path / "d.npz", x=test.x[:16].numpy(), y=test.y[:16].numpy())
    own = assess("demo:digits", tmp_path / "d.npz", attacks=["fgsm"], trust_checks=False)
    assert own.settings.epsilons == pytest.approx((2 / 255, 4 / 255, 8 / 255, 16 / 255))
