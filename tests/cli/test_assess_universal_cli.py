"""``bastion assess --patch --perturbation``: both patterns in report.json, report.html, as PNG and in the summary."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bastion.cli.main import main

QUICK = ["assess", "demo:digits", "-a", "fgsm", "-n", "32", "--eps", "0.2", "--no-trust-checks", "-q"]


def test_patch_and_perturbation_are_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    options = ["--patch", "--patch-size", "0.5", "--patch-steps", "30", "--perturbation", "--perturbation-epochs", "1"]
    assert main([*QUICK, *options, "-o", str(tmp_path)]) == 0
    data = json.loads((tmp_path / "report.json").read_text())
    patch, perturbation = data["universal"]
    assert patch["attack"] == "patch" and patch["config"]["steps"] == 30 and patch["config"]["size"] == 0.5
    assert perturbation["config"]["eps"] == 0.2  # the largest (here the only) epsilon of the assessment
    assert patch["n_train"] + patch["n_holdout"] == 360  # all of the digits test split
    assert (tmp_path / patch["png"]).is_file() and (tmp_path / perturbation["png"]).is_file()
    assert 'id="universal"' in (tmp_path / "report.html").read_text()
    printed = " ".join(capsys.readouterr().out.split())
    assert "patch: fools" in printed and "universal-perturbation: fools" in printed


def test_off_by_default(tmp_path: Path) -> None:
    assert main([*QUICK, "-o", str(tmp_path)]) == 0
    assert json.loads((tmp_path / "report.json").read_text())["universal"] == []
    assert not (tmp_path / "patch.png").exists()


def test_a_label_only_model_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main([*QUICK, "--knowledge", "labels", "-a", "hopskipjump", "--patch", "-o", str(tmp_path)])
    assert code == 2
    assert "learn from gradients; the model exposes only labels" in " ".join(capsys.readouterr().err.split())
