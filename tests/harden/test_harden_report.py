"""The before/after report: a hardened model that only masks gradients is caught; JSON is the single source."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

from bastion.data import Dataset
from bastion.harden import HardenResult
from bastion.harden.report import (
    HardenReport,
    compare,
    flat_in_eps,
    harden_from_dict,
    harden_to_dict,
    read_harden_json,
    report_attacks,
    report_epsilons,
    write_harden_report,
)
from bastion.models import TorchClassifier
from bastion.report.model import WorstCase


class Quantised(nn.Module):
    """Rounds inputs to the digits' 16 grey levels: the clean data passes unchanged, every input gradient is zero."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.inner(torch.round(x * 16) / 16)
        return out


@pytest.fixture(scope="module")
def masked_report(digits_model: TorchClassifier, pgd_hardened: HardenResult, digits_test: Dataset) -> HardenReport:
    """The undefended model behind a gradient-masking input layer, passed off as the hardening result."""
    masked = TorchClassifier(Quantised(digits_model.module), input_shape=(1, 8, 8), name="masked")
    pretend = replace(pgd_hardened, model=masked)
    return compare(digits_model, pretend, digits_test, preset="quick", epsilons=[0.1, 0.2], n_examples=24, seed=0)


def test_a_model_that_only_masks_gradients_is_caught(masked_report: HardenReport) -> None:
    checks = {finding.check for finding in masked_report.masking_findings}
    assert masked_report.masking_suspected
    assert {"vanishing_gradients", "black_box_beats_white_box"} <= checks
    square = {r.eps: r.robust_accuracy for r in masked_report.after.runs if r.attack == "square"}
    pgd = {r.eps: r.robust_accuracy for r in masked_report.after.runs if r.attack == "pgd"}
    assert square[0.2] < pgd[0.2] - 0.5  # the black-box attack walks through what stops the gradients
    # The worst case (Square included) shows no real gain at eps 0.2: the masking bought nothing there.
    assert masked_report.rows[-1].after <= masked_report.rows[-1].before + 0.1


def test_the_report_is_written_as_json_and_html_from_the_json(masked_report: HardenReport, tmp_path: Path) -> None:
    paths = write_harden_report(masked_report, tmp_path)
    again = read_harden_json(paths["json"])
    assert again == harden_from_dict(harden_to_dict(masked_report))
    assert again.rows == masked_report.rows and again.masking_suspected
    page = paths["html"].read_text(encoding="utf-8")
    assert "Gradient masking suspected" in page and "black_box_beats_white_box" in page
    assert "Content-Security-Policy" in page and "<script" not in page


def test_flat_robust_accuracy_across_epsilons_is_flagged(masked_report: HardenReport) -> None:
    after = masked_report.after
    flat = replace(after, worst_case=(WorstCase(0.1, 0.8, {}), WorstCase(0.3, 0.8, {})))
    falling = replace(after, worst_case=(WorstCase(0.1, 0.8, {}), WorstCase(0.3, 0.4, {})))
    broken = replace(after, worst_case=(WorstCase(0.1, 0.0, {}), WorstCase(0.3, 0.0, {})))
    assert [f.check for f in flat_in_eps(flat)] == ["flat_in_eps"]
    assert flat_in_eps(falling) == [] and flat_in_eps(broken) == []


def test_the_report_attacks_are_the_presets_white_box_ones_plus_square_on_images() -> None:
    assert report_attacks("quick", "linf", (1, 8, 8)) == ("fgsm", "pgd", "apgd-ce", "deepfool", "square")
    assert "square" not in report_attacks("quick", "linf", (30,))
    assert "square" not in report_attacks("quick", "l1", (1, 8, 8))


def test_report_epsilons_add_the_training_radius(digits_test: Dataset) -> None:
    assert report_epsilons(digits_test, "linf", 0.25, (0.0, 1.0)) == (0.1, 0.2, 0.25, 0.3)
    plain = replace(digits_test, epsilons=None)
    assert report_epsilons(plain, "linf", 0.3, (0.0, 1.0)) == (0.15, 0.3, 0.6)
    assert report_epsilons(plain, "linf", 0.8, (0.0, 1.0)) == (0.4, 0.8, 1.0)


def test_a_reject_class_model_is_assessed_as_its_classifier_with_its_rejection_rates_beside(
    digits_model: TorchClassifier, reject_hardened: HardenResult, digits_test: Dataset, tmp_path: Path
) -> None:
    report = compare(digits_model, reject_hardened, digits_test, preset="quick", epsilons=[0.2], n_examples=8)
    assert report.after.model.num_classes == 10 and report.before.model.num_classes == 10
    assert report.rejection is not None and report.rejection.n_examples == len(digits_test)
    assert report.rejection.pgd_caught >= 0.85 and report.rejection.clean_rejected <= 0.15
    page = write_harden_report(report, tmp_path)["html"].read_text(encoding="utf-8")
    assert "Reject class" in page and "an adaptive attacker" in page
