"""assess(patch=..., perturbation=...): learned on one share of the data, measured on the disjoint rest, reported."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image
from torch import Tensor

import bastion.evaluation.universal as universal
from bastion.attacks.universal import AdversarialPatch, PatternSuccess, pattern_success
from bastion.data import Dataset, load_demo
from bastion.errors import ConfigError, DataError
from bastion.evaluation import PatchOptions, PerturbationOptions, assess
from bastion.evaluation.universal import split_holdout
from bastion.models import TorchClassifier
from bastion.report import Assessment, read_json, render_html

LinearFactory = Callable[..., TorchClassifier]  # the conftest's linear_model fixture
PATCH = PatchOptions(size=0.5, steps=40)
PERTURBATION = PerturbationOptions(epochs=2, eps=0.3)


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Assessment, Path, dict[str, list[Tensor]]]:
    """One small assessment of the digits demo with both patterns, and the inputs they were learned and measured on."""
    seen: dict[str, list[Tensor]] = {"train": [], "holdout": []}

    class Recording(AdversarialPatch):
        def __call__(self, model: Any, x: Tensor, y: Tensor, *, seed: int = 0) -> Any:
            seen["train"].append(x.clone())
            return super().__call__(model, x, y, seed=seed)

    def measuring(model: Any, x: Tensor, y: Tensor, apply: Any, **options: Any) -> PatternSuccess:
        seen["holdout"].append(x.clone())
        return pattern_success(model, x, y, apply, **options)

    out = tmp_path_factory.mktemp("universal-report")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(universal, "AdversarialPatch", Recording)
        mp.setattr(universal, "pattern_success", measuring)
        report = assess(
            "demo:digits",
            attacks=["fgsm"],
            n_examples=32,
            epsilons=[0.1, 0.2],
            trust_checks=False,
            seed=5,
            patch=PATCH,
            perturbation=PERTURBATION,
            out_dir=out,
        )
    return report, out, seen


def test_split_is_disjoint_complete_and_seeded() -> None:
    train, holdout = split_holdout(101, 0.6, seed=3)
    assert train.numel() == 61 and holdout.numel() == 40
    assert set(train.tolist()).isdisjoint(holdout.tolist())
    assert sorted(train.tolist() + holdout.tolist()) == list(range(101))
    again, _ = split_holdout(101, 0.6, seed=3)
    other, _ = split_holdout(101, 0.6, seed=4)
    assert torch.equal(train, again) and not torch.equal(train, other)


@pytest.mark.parametrize("share", [0.0, 1.0, 1.5, -0.2])
def test_split_refuses_a_share_that_leaves_nothing_out(share: float) -> None:
    with pytest.raises(ConfigError, match=rf"expected 0 < train_share < 1 \(the rest is held out\), got {share}"):
        split_holdout(10, share, seed=0)
    with pytest.raises(DataError, match=r"3 examples cannot be split 0.9 / 0.1: a side would be empty"):
        split_holdout(3, 0.9, seed=0)


def test_the_patterns_learn_only_on_the_training_share_and_are_measured_on_the_rest(
    recorded: tuple[Assessment, Path, dict[str, list[Tensor]]],
) -> None:
    report, _, seen = recorded
    data = load_demo("digits", "test")
    train, holdout = split_holdout(len(data), 0.5, seed=5)
    (patch_train,) = seen["train"]
    assert torch.equal(patch_train, data.x[train])
    # Each pattern and its random baseline are measured on the held-out rows only.
    assert len(seen["holdout"]) == 4
    assert all(torch.equal(x, data.x[holdout]) for x in seen["holdout"])
    for run in report.universal:
        assert (run.n_train, run.n_holdout) == (train.numel(), holdout.numel())
        assert run.n_train + run.n_holdout == len(data)


def test_the_report_carries_both_patterns_with_their_settings(
    recorded: tuple[Assessment, Path, dict[str, list[Tensor]]],
) -> None:
    report, _, _ = recorded
    patch, perturbation = report.universal
    assert patch.attack == "patch" and patch.shape == (1, 4, 4) and len(patch.pixels) == 16
    assert patch.config["size"] == 0.5 and patch.config["steps"] == 40 and patch.config["seed"] == 5
    assert patch.gradients == 40 * 128  # one backward row per pasted image
    # Measured: held-out fooling rate 0.54 against 0.22 for a random patch of the same size.
    assert patch.holdout_success > patch.baseline_success + 0.15
    assert patch.holdout_target_success is None and patch.pixel_range == (0.0, 1.0)
    assert perturbation.attack == "universal-perturbation" and perturbation.shape == (1, 8, 8)
    assert perturbation.config["eps"] == 0.3 and perturbation.config["norm"] == "linf"
    low, high = perturbation.pixel_range
    assert low == -high and 0 < high <= 0.3 + 1e-6
    assert all(0 <= p <= 255 for p in perturbation.pixels)


def test_the_written_report_round_trips_and_shows_the_patch(
    recorded: tuple[Assessment, Path, dict[str, list[Tensor]]],
) -> None:
    report, out, _ = recorded
    assert read_json(out / "report.json") == report
    assert [run.png for run in report.universal] == ["patch.png", "universal-perturbation.png"]
    with Image.open(out / "patch.png") as image:
        assert image.size == (256, 256)  # 4x4 pixels enlarged 64 times
    page = (out / "report.html").read_text(encoding="utf-8")
    section = page[page.index('<section id="universal">') :]
    section = section[: section.index("</section>")]
    assert section.count('src="data:image/png;base64,') == 2
    assert "Adversarial patch" in section and "held-out fooling rate" in section
    assert f"{report.universal[0].holdout_success:.1%}" in section
    assert "patch.png" in section and "size=0.5" in section


def test_without_options_there_is_no_section(digits_model: TorchClassifier, digits_data: Dataset) -> None:
    report = assess(digits_model, digits_data, attacks=["fgsm"], epsilons=[0.1], trust_checks=False)
    assert report.universal == ()
    assert 'id="universal"' not in render_html(report)


def test_a_targeted_patch_reports_its_target_success(digits_model: TorchClassifier) -> None:
    data = load_demo("digits", "test")
    run = universal.patch_run(digits_model, replace(data, x=data.x[:120], y=data.y[:120]), replace(PATCH, target=3), 0)
    assert run.holdout_target_success is not None and 0.0 <= run.holdout_target_success <= 1.0
    assert run.config["target"] == 3


def test_bad_options_are_refused_before_any_attack_runs(
    digits_model: TorchClassifier, digits_data: Dataset, linear_model: LinearFactory
) -> None:
    common: dict[str, Any] = {"attacks": ["fgsm"], "epsilons": [0.1], "trust_checks": False}
    with pytest.raises(ConfigError, match=r"learn from gradients; the model exposes only labels"):
        assess(digits_model, digits_data, knowledge="labels", patch=PatchOptions(), **common)
    with pytest.raises(ConfigError, match=r"expected 0 < patch size <= 1 .* got 0"):
        assess(digits_model, digits_data, patch=PatchOptions(size=0), **common)
    with pytest.raises(ConfigError, match=r"expected a target class in 0..9, got 12"):
        assess(digits_model, digits_data, perturbation=PerturbationOptions(target=12), **common)
    with pytest.raises(ConfigError, match=r"expected a perturbation eps > 0, got -1"):
        assess(digits_model, digits_data, perturbation=PerturbationOptions(eps=-1), **common)
    tabular = Dataset(x=torch.rand(20, 4), y=torch.randint(0, 3, (20,)), name="table")
    with pytest.raises(DataError, match=r"a patch needs images \(C, H, W\); table has inputs of shape \(4,\)"):
        assess(linear_model(4, 3), tabular, patch=PatchOptions(), **common)
